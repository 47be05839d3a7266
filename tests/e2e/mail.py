"""Small helpers to send mail to the stack with a real SMTP client."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid


def build(sender: str, recipients: list[str], subject: str, body: str = "Hello.\n") -> bytes:
    message = EmailMessage()
    message["From"] = sender or "mailer-daemon@local.test"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="client.test")
    message.set_content(body)
    return bytes(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))


def send(port: int, sender: str, recipients: list[str], data: bytes) -> str:
    """Send one message; return the server's final reply text (``2.0.0 Ok: queued as ID``)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, reply = client.mail(sender)
        assert code == 250, reply
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            assert code == 250, (recipient, code, reply)
        code, reply = client.data(data)
        assert code == 250, (code, reply)
        return reply.decode()


def send_many(port: int, sender: str, recipient: str, count: int, tag: str) -> list[str]:
    """Send ``count`` messages on one session; return their subjects."""
    subjects = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for index in range(count):
            subject = f"{tag} {index:04d}"
            client.sendmail(sender, [recipient], build(sender, [recipient], subject))
            subjects.append(subject)
    return subjects


def subject_of(data: bytes) -> str:
    for line in data.split(b"\n"):
        if line.lower().startswith(b"subject:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""
