"""One realistic burst of mail through a running stack, for the observability tests.

One message from ``sender@local.test`` to four recipients exercises every path:

    user@local.test       delivered to the Maildir
    ok@remote2.test       relayed to the MX of remote2.test
    nobody@remote2.test   refused with 550 by that MX -> failed -> DSN back to the sender
    later@single.test     451 once (deferred, retry queue), delivered on the retry

plus a message from an authenticated account on the submission port, a recipient
refused at RCPT (unsafe local part) and a client talking before the greeting
(refused session). Start the stack with ``traffic_env(folder)``.
"""

from __future__ import annotations

import re
import smtplib
import socket
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tests.e2e.mail import build, send
from tests.support.mx_server import MxServers
from tests.support.stack import Stack, free_port

SENDER = "sender@local.test"
LOCAL = "user@local.test"
RELAYED = "ok@remote2.test"
REFUSED = "nobody@remote2.test"
DEFERRED = "later@single.test"
REFUSAL = "550 5.1.1 <nobody@remote2.test>: no such user"
DEFERRAL = "451 4.7.1 greylisted, try later"
ACCOUNT, PASSWORD = "newsletter", "s3cret-for-tests"


@dataclass(frozen=True)
class Traffic:
    queue_id: str


def traffic_env(folder: Path) -> dict[str, str]:
    """Settings for the stack: a submission port with one account, a pre-greeting pause."""
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "users"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    users.write_text(f"{ACCOUNT}:{hashed}\n")
    return {
        "STAFFETTA_GREET_PAUSE": "300ms",
        "STAFFETTA_SUBMISSION_LISTEN": f"127.0.0.1:{free_port()}",
        "STAFFETTA_USERS_FILE": str(users),
        "STAFFETTA_ALLOW_PLAINTEXT_AUTH": "true",
    }


def send_traffic(stack: Stack, mx: MxServers, timeout: float = 30.0) -> Traffic:
    single, remote2 = mx[0], mx[2]
    single.fail_rcpt(DEFERRAL, times=1, recipient=DEFERRED)
    remote2.reply_rcpt(REFUSED, REFUSAL)
    recipients = [LOCAL, RELAYED, REFUSED, DEFERRED]
    reply = send(stack.smtp_port, SENDER, recipients, build(SENDER, recipients, "observed"))
    found = re.search(r"queued as (\S+)", reply)
    assert found, reply
    refuse_unsafe_recipient(stack.smtp_port)
    talk_before_greeting(stack.smtp_port)
    submit_as_account(stack)

    stack.wait_for_mail(LOCAL, count=2, timeout=timeout)
    remote2.wait_for_messages(1, timeout=timeout)
    single.wait_for_messages(1, timeout=timeout)  # after the deferral and one retry
    stack.wait_for_mail(SENDER, timeout=timeout)  # the DSN for nobody@remote2.test
    return Traffic(found.group(1))


def submit_as_account(stack: Stack) -> None:
    port = int(stack.base_env()["STAFFETTA_SUBMISSION_LISTEN"].rpartition(":")[2])
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.login(ACCOUNT, PASSWORD)
        client.sendmail(SENDER, [LOCAL], build(SENDER, [LOCAL], "from an account"))


def refuse_unsafe_recipient(port: int) -> None:
    # (A SIZE= too big is answered by aiosmtpd itself, before the ingress counts it.)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, reply = client.mail(SENDER)
        assert code == 250, reply
        code, reply = client.rcpt("bad/name@local.test")
        assert code == 550, reply


def talk_before_greeting(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall(b"EHLO spambot.test\r\n")
        reply = raw.recv(1024)
    assert reply.startswith(b"554"), reply
