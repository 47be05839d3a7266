"""SMTP replies as typed values; they become strings only at the SMTP edge."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: ``code`` (e.g. 250), RFC 3463 ``enhanced`` status, free ``text``."""

    code: int
    enhanced: str
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


def queued(queue_id: str) -> Reply:
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
UNSAFE_RECIPIENT = Reply(550, "5.1.3", "Recipient address rejected: bad destination mailbox")
BAD_ADDRESS = Reply(553, "5.1.3", "Bad address syntax")
BAD_SENDER = Reply(553, "5.1.7", "Sender address rejected: bad address syntax")
SENDER_NOT_OWNED = Reply(
    553, "5.7.1", "Sender address rejected: not owned by the authenticated user"
)
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
COMMAND_TOO_LONG = Reply(500, "5.5.2", "Command line too long")
BAD_SYNTAX = Reply(500, "5.5.2", "Syntax error")
BAD_ENCODING = Reply(500, "5.5.2", "Invalid characters in command")
BAD_DATA = Reply(550, "5.6.0", "Message content rejected: NUL character")
BAD_HELO = Reply(501, "5.5.4", "Invalid HELO/EHLO hostname")
PROXY_REFUSED = Reply(421, "4.7.0", "PROXY protocol header missing or invalid")
BROKER_DOWN = Reply(451, "4.3.0", "Temporary failure: queue unavailable, try again later")
BROKER_DOWN_GREETING = Reply(421, "4.3.0", "Service not available, try again later")
TOO_MANY_SESSIONS = Reply(421, "4.7.0", "Too many connections, try again later")
EARLY_TALKER = Reply(554, "5.5.0", "Protocol error: talking before the greeting")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Error: timeout exceeded, closing connection")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_UNAVAILABLE = Reply(502, "5.5.1", "AUTH not available")
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed authentications, try again later")
RATE_LIMITED = Reply(450, "4.7.1", "Sending rate limit exceeded, try again later")
QUOTA_EXCEEDED = Reply(
    550, "5.7.1", "Monthly sending quota exceeded, no more mail accepted until next month"
)

# aiosmtpd answers some commands itself, without enhanced status codes.
# RFC 2034: once ENHANCEDSTATUSCODES is announced, every reply but the greeting
# and the EHLO/HELO answer carries one; these are the ones we give them.
_REWORDED = {
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": LINE_TOO_LONG,
    "500 Command line too long": COMMAND_TOO_LONG,
    "500 Error: strict ASCII mode": BAD_ENCODING,
    "500 Error: bad syntax": BAD_SYNTAX,
}
_DEFAULT_ENHANCED = {
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    454: "4.7.0",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.7.0",
    555: "5.5.4",
}
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def with_enhanced_code(line: str) -> str:
    """Give one aiosmtpd reply line an enhanced status code if it lacks one."""
    if line in _REWORDED:
        return str(_REWORDED[line])
    code_text, sep, text = line.partition(" ")
    if not sep or len(code_text) != 3 or not code_text.isdigit():
        return line
    code = int(code_text)
    if code in (220, 334, 354) and line != "220 Ready to start TLS":
        return line
    if _ENHANCED.match(text.split(" ", 1)[0]):
        return line
    enhanced = _DEFAULT_ENHANCED.get(code, f"{code_text[0]}.0.0")
    return f"{code_text} {enhanced} {text}"
