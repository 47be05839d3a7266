"""Per-destination limits shared by every delivery replica, through Redis.

With ``STAFFETTA_REDIS_URL`` set, the concurrency cap and the rate limit hold
for the whole deployment instead of each process: one Lua script checks and
takes a slot (a lease in a sorted set, so a crashed worker's slot expires)
and counts the message in the current rate window. While Redis is down the
process falls back to its own :class:`DestinationLimiter` and says so in the
logs: a limit may be exceeded for a while, mail is never held up for it.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.delivery.throttle import DestinationLimiter, Refusal

log = logging.getLogger(__name__)

SLOT_LEASE = 900.0  # longer than any attempt can take with sane timeouts

_ACQUIRE = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local limit = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  return 'concurrency'
end
if limit > 0 then
  local count = redis.call('INCR', KEYS[2])
  if count == 1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
  end
  if count > limit then
    return 'rate'
  end
end
if cap > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.floor(lease * 1000))
end
return 'ok'
"""


class Limiter(Protocol):
    async def acquire(self, destination: str) -> Refusal | None: ...

    async def release(self, destination: str) -> None: ...

    async def close(self) -> None: ...


class LocalLimiter:
    """This process's own counts (no Redis configured)."""

    def __init__(self, limits: DestinationLimiter) -> None:
        self.limits = limits

    async def acquire(self, destination: str) -> Refusal | None:
        return self.limits.acquire(destination, time.monotonic())

    async def release(self, destination: str) -> None:
        self.limits.release(destination)

    async def close(self) -> None:
        return None


def rate_window(rate: float) -> tuple[float, int]:
    """(window seconds, messages per window) approximating ``rate`` per second.

    Windows are at least a second long, and long enough to hold one message:
    60/m -> one a second, 1/m -> one a minute, 10/s -> ten a second.
    """
    window = max(1.0, 1.0 / rate)
    return window, max(1, math.floor(rate * window + 1e-9))


class RedisLimiter:
    def __init__(
        self,
        url: str,
        prefix: str,
        limits: DestinationLimiter,
        *,
        lease: float = SLOT_LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._script = self._redis.register_script(_ACQUIRE)
        self._prefix = prefix
        self._limits = limits
        self._lease = lease
        self._clock = clock
        self._tokens: dict[str, list[str]] = {}  # Redis slots this process holds
        self._local: dict[str, int] = {}  # fallback slots this process holds
        self._degraded = False

    async def acquire(self, destination: str) -> Refusal | None:
        now = self._clock()
        token = secrets.token_hex(8)
        keys = [f"{self._prefix}:slots:{destination}"]
        window, per_window = rate_window(self._limits.rate) if self._limits.rate else (1.0, 0)
        keys.append(f"{self._prefix}:rate:{destination}:{int(now // window)}")
        args: list[str | int | float] = [
            now,
            self._lease,
            self._limits.concurrency,
            token,
            per_window,
            int(window * 1000),
        ]
        try:
            answer = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            refusal = self._limits.acquire(destination, time.monotonic())
            if refusal is None:
                self._local[destination] = self._local.get(destination, 0) + 1
            return refusal
        self._degraded = False
        result = answer.decode() if isinstance(answer, bytes) else str(answer)
        if result == "concurrency":
            return "concurrency"
        if result == "rate":
            return "rate"
        self._tokens.setdefault(destination, []).append(token)
        return None

    async def release(self, destination: str) -> None:
        if self._local.get(destination):
            self._local[destination] -= 1
            self._limits.release(destination)
            return
        tokens = self._tokens.get(destination)
        if not tokens:
            return
        token = tokens.pop()
        if not tokens:
            del self._tokens[destination]
        if self._limits.concurrency:
            try:
                await self._redis.zrem(f"{self._prefix}:slots:{destination}", token)
            except (RedisError, OSError) as exc:
                self._warn(exc)  # the lease runs out on its own

    async def close(self) -> None:
        await self._redis.aclose()

    def _warn(self, exc: BaseException) -> None:
        if not self._degraded:
            log.warning(
                "redis unavailable: destination limits are per process for now",
                extra={"event": "redis_unavailable", "error": str(exc)},
            )
        self._degraded = True
