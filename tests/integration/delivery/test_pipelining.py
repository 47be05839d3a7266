"""SMTP PIPELINING (RFC 2920) in the delivery client, against real servers on loopback.

aiosmtpd plays the remote MX (advertising PIPELINING or not) and records every
chunk of bytes it reads, so a test sees which commands travelled together.
Postfix's smtp-sink is used too when it is installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import AnyStr

import pytest
from aiosmtpd.smtp import SMTP

from services.delivery.connections import ConnectionPool
from services.delivery.smtp_client import ClientConfig, Target, Timeouts, send
from services.delivery.transcript import Transcript, judge
from tests.integration.delivery.conftest import BODY, HOSTNAME
from tests.support.mx_server import MxServer, MxServers
from tests.support.processes import terminate_popen
from tests.support.stack import free_port, wait_until

CONFIG = ClientConfig(helo=HOSTNAME, timeouts=Timeouts(connect=2.0, command=5.0, data=5.0))
SENDER = "s@src.test"


class RecordingSMTP(SMTP):
    """aiosmtpd, recording what each read brought; can drop the session at a chosen point."""

    def __init__(self, fleet: RecordingFleet, handler: MxServer, **options: object) -> None:
        super().__init__(handler, **options)
        self._fleet = fleet
        self._reads: list[bytes] = []
        fleet.sessions.append(self._reads)

    def data_received(self, data: bytes) -> None:
        self._reads.append(data)
        fleet = self._fleet
        if (fleet.drop_at_rset and data.startswith(b"RSET")) or (
            fleet.drop_at_end_of_data and data.endswith(b"\r\n.\r\n")
        ):
            # Closed without a reply, as a server timing out a cached session
            # does just as the client reuses it (or one crashing mid-message).
            assert self.transport is not None
            self.transport.close()
            return
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        # Some servers answer a pipelined DATA with 354 although every RCPT failed.
        envelope = self.envelope
        if self._fleet.accept_data_without_rcpt and envelope and not envelope.rcpt_tos:
            envelope.rcpt_tos.append("nobody@example.test")
        await super().smtp_DATA(arg)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd reads pipelined commands fine but does not say so in EHLO.
        if self._fleet.pipelining and status == "250 HELP":
            await super().push("250-PIPELINING")
        await super().push(status)


class RecordingFleet(MxServers):
    """One fake MX (mx1.example.test on 127.0.0.2) made of :class:`RecordingSMTP` sessions."""

    def __init__(self, *, pipelining: bool = True) -> None:
        super().__init__(count=1, domain="example.test")
        self.pipelining = pipelining
        self.sessions: list[list[bytes]] = []  # per connection, the bytes of each read
        self.drop_at_rset = False
        self.drop_at_end_of_data = False
        self.accept_data_without_rcpt = False

    def make_smtp(self, server: MxServer) -> SMTP:
        return RecordingSMTP(self, server, hostname=server.hostname, loop=self._loop)

    @property
    def target(self) -> Target:
        return Target(self[0].hostname, self[0].host, self.port)

    def reads(self) -> list[bytes]:
        return [chunk for session in self.sessions for chunk in session]


@pytest.fixture
async def fleet() -> AsyncIterator[RecordingFleet]:
    async with RecordingFleet() as fleet:
        yield fleet


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(60.0)
    yield pool
    await pool.close()


def _the_read_with(reads: list[bytes], command: bytes) -> bytes:
    [found] = [chunk for chunk in reads if command in chunk]
    return found


def _outcome(transcript: Transcript, recipients: list[str]) -> dict[str, tuple[str, str]]:
    verdict = judge(transcript, recipients)
    return {r: (result.action, result.status) for r, result in verdict.results.items()}


async def test_mail_every_rcpt_and_data_go_in_one_write(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    recipients = ["a@example.test", "b@example.test", "c@example.test"]
    transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
    assert [reply.code for reply in transcript.rcpt.values()] == [250, 250, 250]
    assert transcript.data_reply is not None and transcript.data_reply.code == 250
    batch = _the_read_with(fleet.reads(), b"MAIL FROM:")
    assert batch == (
        b"MAIL FROM:<s@src.test> SIZE=%d\r\n" % len(BODY)
        + b"RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n"
        + b"DATA\r\n"
    )
    [received] = fleet[0].messages
    assert (received.sender, received.recipients) == (SENDER, recipients)
    assert received.data == BODY  # dot-stuffed on the way, unstuffed by the server
    assert pool.idle_count() == 1


async def test_mixed_rcpt_replies(fleet: RecordingFleet, pool: ConnectionPool) -> None:
    fleet[0].reply_rcpt("nobody@example.test", "550 5.1.1 <nobody@example.test>: no such user")
    recipients = ["nobody@example.test", "a@example.test"]
    transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
    assert {r: reply.code for r, reply in transcript.rcpt.items()} == {
        "nobody@example.test": 550,
        "a@example.test": 250,
    }
    assert transcript.data_reply is not None and transcript.data_reply.code == 250
    assert _outcome(transcript, recipients) == {
        "nobody@example.test": ("failed", "5.1.1"),
        "a@example.test": ("delivered", "2.0.0"),
    }
    assert [m.recipients for m in fleet[0].messages] == [["a@example.test"]]
    assert b"DATA\r\n" in _the_read_with(fleet.reads(), b"MAIL FROM:")


async def test_every_rcpt_refused_sends_no_body(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    fleet[0].reply_rcpt("x@example.test", "550 5.1.1 no such user")
    fleet[0].reply_rcpt("y@example.test", "450 4.2.1 mailbox busy")
    recipients = ["x@example.test", "y@example.test"]
    transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
    assert [reply.code for reply in transcript.rcpt.values()] == [550, 450]
    # The pipelined DATA got aiosmtpd's "503 need RCPT": not a failure of the data.
    assert transcript.data_reply is None
    assert not transcript.error
    assert _outcome(transcript, recipients) == {
        "x@example.test": ("failed", "5.1.1"),
        "y@example.test": ("deferred", "4.2.1"),
    }
    assert b"DATA\r\n" in _the_read_with(fleet.reads(), b"MAIL FROM:")
    assert not any(b"Subject: test" in chunk for chunk in fleet.reads())
    assert fleet[0].messages == []
    # Every reply was read: the session is in step and fit for the next message.
    assert pool.idle_count() == 1
    again = await send(fleet.target, SENDER, ["a@example.test"], BODY, CONFIG, pool)
    assert again.reused and again.data_reply is not None and again.data_reply.code == 250


async def test_every_rcpt_refused_and_354_anyway_ends_with_a_lone_dot(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    fleet.accept_data_without_rcpt = True
    fleet[0].reply_rcpt("x@example.test", "550 5.1.1 no such user")
    transcript = await send(fleet.target, SENDER, ["x@example.test"], BODY, CONFIG, pool)
    assert [reply.code for reply in transcript.rcpt.values()] == [550]
    assert transcript.data_reply is None  # the reply to "." is not the message's
    assert _outcome(transcript, ["x@example.test"]) == {"x@example.test": ("failed", "5.1.1")}
    [empty] = fleet[0].messages
    assert empty.data == b""  # RFC 2920 3.1: "." alone, never the body
    assert not any(b"Subject: test" in chunk for chunk in fleet.reads())


async def test_421_on_rcpt_ends_the_session(fleet: RecordingFleet, pool: ConnectionPool) -> None:
    fleet[0].reply_rcpt("b@example.test", "421 4.3.2 shutting down")
    recipients = ["a@example.test", "b@example.test", "c@example.test"]
    transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
    assert {r: reply.code for r, reply in transcript.rcpt.items()} == {
        "a@example.test": 250,
        "b@example.test": 421,
    }
    assert transcript.data_reply is None
    assert not transcript.reusable
    assert pool.idle_count() == 0
    assert not any(b"Subject: test" in chunk for chunk in fleet.reads())
    assert _outcome(transcript, recipients) == {
        "a@example.test": ("deferred", "4.4.2"),
        "b@example.test": ("deferred", "4.3.2"),
        "c@example.test": ("deferred", "4.4.2"),
    }
    assert judge(transcript, recipients).try_next


async def test_refused_mail(fleet: RecordingFleet, pool: ConnectionPool) -> None:
    fleet[0].fail_mail("452 4.3.1 insufficient system storage")
    recipients = ["a@example.test"]
    transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
    assert transcript.reply is not None and transcript.reply.code == 452
    assert transcript.reply_phase == "mail"
    assert transcript.rcpt == {}
    assert transcript.data_reply is None
    assert not transcript.error
    assert _outcome(transcript, recipients) == {"a@example.test": ("deferred", "4.3.1")}
    assert fleet[0].messages == []
    assert not any(b"Subject: test" in chunk for chunk in fleet.reads())


async def test_without_pipelining_one_command_at_a_time(pool: ConnectionPool) -> None:
    async with RecordingFleet(pipelining=False) as fleet:
        recipients = ["a@example.test", "b@example.test"]
        transcript = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
        second = await send(fleet.target, SENDER, recipients, BODY, CONFIG, pool)
        await pool.close()
    for done in (transcript, second):
        assert done.data_reply is not None and done.data_reply.code == 250
    assert second.reused
    assert [m.recipients for m in fleet[0].messages] == [recipients, recipients]
    reads = fleet.reads()
    assert b"RSET\r\n" in reads
    for command in (b"MAIL FROM:", b"RCPT TO:<a", b"RCPT TO:<b", b"DATA\r\n"):
        assert all(chunk.startswith(command) for chunk in reads if command in chunk)


async def test_a_cached_session_is_reset_in_the_same_write(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    first = await send(fleet.target, SENDER, ["a@example.test"], BODY, CONFIG, pool)
    second = await send(fleet.target, SENDER, ["b@example.test"], BODY, CONFIG, pool)
    assert not first.reused and second.reused
    assert second.data_reply is not None and second.data_reply.code == 250
    assert fleet[0].connections == 1
    assert fleet[0].resets == 1
    assert [m.recipients for m in fleet[0].messages] == [["a@example.test"], ["b@example.test"]]
    batch = _the_read_with(fleet.reads(), b"RSET")
    assert batch.startswith(b"RSET\r\nMAIL FROM:<s@src.test>")
    assert batch.endswith(b"RCPT TO:<b@example.test>\r\nDATA\r\n")


async def test_a_cached_session_closed_meanwhile_goes_over_a_new_one(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    await send(fleet.target, SENDER, ["a@example.test"], BODY, CONFIG, pool)
    fleet.drop_at_rset = True  # the server drops the session when the RSET arrives
    transcript = await send(fleet.target, SENDER, ["b@example.test"], BODY, CONFIG, pool)
    assert not transcript.reused
    assert not transcript.error
    assert transcript.data_reply is not None and transcript.data_reply.code == 250
    assert fleet[0].connections == 2
    assert [m.recipients for m in fleet[0].messages] == [["a@example.test"], ["b@example.test"]]
    assert fleet.sessions[0][-1].startswith(b"RSET\r\nMAIL FROM:")  # what was dropped


async def test_a_failure_after_the_reset_is_not_retried_elsewhere(
    fleet: RecordingFleet, pool: ConnectionPool
) -> None:
    await send(fleet.target, SENDER, ["a@example.test"], BODY, CONFIG, pool)
    fleet.drop_at_end_of_data = True  # the body arrives, the session dies before its reply
    transcript = await send(fleet.target, SENDER, ["b@example.test"], BODY, CONFIG, pool)
    assert transcript.reused
    assert transcript.error_phase == "data"
    assert transcript.data_reply is None
    assert fleet[0].connections == 1  # no second try: that might deliver the message twice
    assert _outcome(transcript, ["b@example.test"]) == {"b@example.test": ("deferred", "4.4.2")}
    assert pool.idle_count() == 0


# Postfix's own smtp-sink, the remote MX of `make bench`.

SINK_HOST = "127.0.0.2"
SINK_PATH = "/usr/sbin:/usr/bin"


def _sink_unavailable() -> str:
    if shutil.which("smtp-sink", path=SINK_PATH) is None:
        return "smtp-sink is not installed (Debian's postfix: scripts/install-test-tools.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postfix")
        except KeyError:
            return "smtp-sink run as root needs the 'postfix' user to drop to"
    return ""


StartSink = Callable[..., tuple[Target, Path]]


@pytest.fixture
def start_sink() -> Iterator[StartSink]:
    """Start smtp-sink on 127.0.0.2 with extra options, dumping each transaction to a file."""
    reason = _sink_unavailable()
    if reason:
        pytest.skip(reason)
    processes: list[subprocess.Popen[bytes]] = []
    folders: list[Path] = []

    def start(*options: str) -> tuple[Target, Path]:
        # Not under pytest's tmp_path: the sink drops to 'postfix', which cannot enter it.
        folder = Path(tempfile.mkdtemp(prefix="staffetta-test-sink-"))
        folders.append(folder)
        port = free_port(SINK_HOST)
        command = [shutil.which("smtp-sink", path=SINK_PATH) or "smtp-sink", *options]
        if os.geteuid() == 0:  # it refuses to run as root without -u
            entry = pwd.getpwnam("postfix")
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            command += ["-u", "postfix"]
        command += ["-d", f"{folder}/", f"{SINK_HOST}:{port}", "10"]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        wait_until(lambda: _listening(SINK_HOST, port), 10, "smtp-sink to listen")
        return Target("sink.example.test", SINK_HOST, port), folder

    yield start
    for process in processes:
        terminate_popen(process, 5)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def _dumped(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.iterdir())]


async def test_smtp_sink_takes_pipelined_messages_over_one_session(
    start_sink: StartSink, pool: ConnectionPool
) -> None:
    target, folder = start_sink()
    transcripts = [
        await send(target, SENDER, [f"r{index}@example.test", "x@example.test"], BODY, CONFIG, pool)
        for index in range(3)
    ]
    for transcript in transcripts:
        assert [reply.code for reply in transcript.rcpt.values()] == [250, 250]
        assert transcript.data_reply is not None and transcript.data_reply.code == 250
    assert [t.reused for t in transcripts] == [False, True, True]
    dumps = _dumped(folder)
    assert len(dumps) == 3
    assert all(b"Subject: test" in dump for dump in dumps)


async def test_smtp_sink_dropping_a_reused_session_at_rset(
    start_sink: StartSink, pool: ConnectionPool
) -> None:
    target, folder = start_sink("-q", "rset")
    first = await send(target, SENDER, ["a@example.test"], BODY, CONFIG, pool)
    second = await send(target, SENDER, ["b@example.test"], BODY, CONFIG, pool)
    for transcript in (first, second):
        assert transcript.data_reply is not None and transcript.data_reply.code == 250
        assert not transcript.reused  # the cached session died at RSET: a new one took it
    assert len([dump for dump in _dumped(folder) if b"Subject: test" in dump]) == 2
