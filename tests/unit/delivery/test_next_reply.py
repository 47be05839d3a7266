"""next_reply waits for a reply with its own timer: it gives the replies, errors and
protocol state that aiosmtplib's read_response(timeout=...) gives, chunk by chunk."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtplib.errors import (
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from services.delivery.pipelining import next_reply

Reader = Callable[[SMTPProtocol, float], Awaitable[SMTPResponse]]
Step = tuple[str, list[bytes]]  # ("read" | "read_then_lose" | "feed", chunks)


async def aiosmtplib_way(protocol: SMTPProtocol, limit: float) -> SMTPResponse:
    """next_reply as it was: the buffer, else aiosmtplib's own read_response."""
    buffered = protocol._read_response_from_buffer()
    if buffered is not None:
        return buffered
    return await protocol.read_response(timeout=limit)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: Any) -> None:
        pass

    def close(self) -> None:
        self.closing = True


async def run(reader: Reader, steps: list[Step], limit: float) -> list[object]:
    """What each step gave, then the protocol's state."""
    loop = asyncio.get_running_loop()
    protocol = SMTPProtocol(loop)
    protocol.connection_made(Transport())
    seen: list[object] = []
    for kind, chunks in steps:
        if kind == "feed":  # arrives while nothing is awaited: aiosmtplib drops it
            for chunk in chunks:
                protocol.data_received(chunk)
            continue
        for chunk in chunks:
            loop.call_soon(protocol.data_received, chunk)
        if kind == "read_then_lose":
            loop.call_soon(protocol.connection_lost, ConnectionResetError("reset"))
        try:
            reply = await reader(protocol, limit)
            seen.append(("reply", reply.code, reply.message))
        except Exception as exc:
            seen.append(("raised", type(exc), str(exc)))
        await asyncio.sleep(0)  # let every scheduled arrival land before the next step
    waiter = protocol._response_waiter
    seen.append(
        (
            bytes(protocol._buffer),
            protocol._response_pending,
            None if waiter is None else (waiter.done(), waiter.cancelled()),
        )
    )
    return seen


REPLIES = [
    b"250 2.0.0 Ok\r\n",
    b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"421 4.3.2 closing\r\n",
    b"550 5.1.1 <a@b>: no\r\n",
    b"250 bare line feed\n",
    b"25",
    b"oops not a reply\r\n",
    b"\r\n",
]


def random_steps(chooser: random.Random) -> list[Step]:
    stream = b"".join(chooser.choice(REPLIES) for _ in range(chooser.randrange(1, 6)))
    cuts = sorted(chooser.sample(range(1, len(stream)), min(len(stream) - 1, 4)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    steps: list[Step] = []
    while chunks or len(steps) < 3:
        taken = chunks[: chooser.randrange(0, 3)]
        del chunks[: len(taken)]
        kind = chooser.choices(["read", "read_then_lose", "feed"], [8, 1, 1])[0]
        steps.append((kind, taken))
    return steps


async def test_same_as_read_response_over_random_arrivals() -> None:
    chooser = random.Random(8)
    outcomes: set[object] = set()
    for _ in range(300):
        steps = random_steps(chooser)
        # A short limit: a read that no arrival answers times out, in both.
        expected = await run(aiosmtplib_way, steps, 0.002)
        assert await run(next_reply, steps, 0.002) == expected, steps
        outcomes.update(seen[1] for seen in expected[:-1] if isinstance(seen, tuple))
    # Replies of each kind, timeouts, lost connections and malformed replies all came up.
    assert {250, 354, 421, 550, SMTPReadTimeoutError} <= outcomes
    assert {SMTPServerDisconnected, SMTPResponseException} <= outcomes


async def test_a_timeout_then_the_late_reply() -> None:
    steps: list[Step] = [("read", []), ("read", [b"250 late\r\n"]), ("read", [])]
    expected = await run(aiosmtplib_way, steps, 0.01)
    assert expected[0] == ("raised", SMTPReadTimeoutError, "Timed out waiting for server response")
    assert await run(next_reply, steps, 0.01) == expected


async def test_cancelled_while_waiting_as_read_response() -> None:
    loop = asyncio.get_running_loop()
    states = []
    for reader in (aiosmtplib_way, next_reply):
        protocol = SMTPProtocol(loop)
        protocol.connection_made(Transport())
        task = asyncio.create_task(reader(protocol, 5.0))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        protocol.data_received(b"250 after\r\n")
        reply = await reader(protocol, 5.0) if protocol._buffer else None
        waiter = protocol._response_waiter
        states.append((task.cancelled(), protocol._response_pending, waiter is None, reply))
    assert states[0] == states[1]


async def test_a_reply_and_its_timer_due_together() -> None:
    """The reply lands first and wins, in both; the late timer changes nothing."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        for limit in (1e-9, 0.0, -1.0):
            steps: list[Step] = [("read", [b"250 ok\r\n"]), ("read", [b"250 again\r\n"])]
            expected = await run(aiosmtplib_way, steps, limit)
            assert await run(next_reply, steps, limit) == expected, limit
            await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(None)
    assert errors == []
