"""Where the per-account message counters live: Redis, or this process's memory."""

from __future__ import annotations

import logging
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.ingress.quota import Usage, windows

log = logging.getLogger(__name__)


class UsageStore(Protocol):
    async def usage(self, user: str, now: float) -> Usage: ...

    async def record(self, user: str, now: float) -> None: ...

    async def close(self) -> None: ...


class MemoryUsageStore:
    """Per-process counters: each replica counts on its own."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._live: set[tuple[str, str]] = set()  # the (window, period) pairs counted in

    async def usage(self, user: str, now: float) -> Usage:
        hour, day, month = windows(now)
        get = self._counts.get
        return Usage(
            get((user, "hour", hour.period), 0),
            get((user, "day", day.period), 0),
            get((user, "month", month.period), 0),
        )

    async def record(self, user: str, now: float) -> None:
        current = windows(now)
        live = {(w.name, w.period) for w in current}
        if live != self._live:
            # A period is over: forget its counts, so memory stays bounded. Only then:
            # a sweep over every counter on each message would grow with the clients.
            for key in [k for k in self._counts if (k[1], k[2]) not in live]:
                del self._counts[key]
            self._live = live
        for window in current:
            key = (user, window.name, window.period)
            self._counts[key] = self._counts.get(key, 0) + 1

    async def close(self) -> None:
        return None


class RedisUsageStore:
    """Counters shared by every ingress replica; falls back to memory while Redis is down."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = prefix
        self._fallback = MemoryUsageStore()

    def _key(self, user: str, name: str, period: str) -> str:
        return f"{self._prefix}:sent:{user}:{name}:{period}"

    async def usage(self, user: str, now: float) -> Usage:
        keys = [self._key(user, w.name, w.period) for w in windows(now)]
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            log.warning("redis unavailable", extra={"event": "redis_error", "error": str(exc)})
            return await self._fallback.usage(user, now)
        hour, day, month = (int(value or 0) for value in values)
        return Usage(hour, day, month)

    async def record(self, user: str, now: float) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for window in windows(now):
                    key = self._key(user, window.name, window.period)
                    pipe.incr(key)
                    pipe.expire(key, window.seconds)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("redis unavailable", extra={"event": "redis_error", "error": str(exc)})
            await self._fallback.record(user, now)

    async def close(self) -> None:
        await self._redis.aclose()


def usage_store(redis_url: str, prefix: str) -> UsageStore:
    return RedisUsageStore(redis_url, prefix) if redis_url else MemoryUsageStore()
