"""Postfix as a relay to the sink: a throwaway instance in a temp folder.

``postfix -c DIR start`` with a minimal main.cf/master.cf: SMTP on a free loopback
port, every message relayed to ``[127.0.0.1]:SINKPORT``, no DNS, queue in DIR (on the
same disk as RabbitMQ's data, so both pay for durable writes), logs to DIR/maillog.
Nothing is chrooted. Must run as root (Postfix drops to the ``postfix`` user itself).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.net import wait_for_port
from tests.support.stack import free_port

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [{sink_host}]:{sink_port}
smtp_dns_support_level = disabled
smtpd_tls_security_level = none
smtp_tls_security_level = none
default_destination_concurrency_limit = {concurrency}
biff = no
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""

# service type private unpriv chroot wakeup maxproc command
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def write_config(folder: Path, port: int, sink: tuple[str, int], concurrency: int = 20) -> None:
    values = {
        "dir": folder,
        "port": port,
        "sink_host": sink[0],
        "sink_port": sink[1],
        "concurrency": concurrency,
    }
    (folder / "main.cf").write_text(MAIN_CF.format(**values))
    (folder / "master.cf").write_text(MASTER_CF.format(**values))


class PostfixRelay:
    name = "postfix"

    def __init__(self, base: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="staffetta-bench-postfix-", dir=base))
        self.folder.chmod(0o755)  # the postfix user walks into queue/ and data/
        self.host = "127.0.0.1"
        self.port = free_port()
        self.master_pid = 0

    def _postfix(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.folder), action],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, sink_host: str, sink_port: int) -> None:
        write_config(self.folder, self.port, (sink_host, sink_port))
        (self.folder / "queue").mkdir()
        data = self.folder / "data"
        data.mkdir()
        entry = pwd.getpwnam("postfix")
        os.chown(data, entry.pw_uid, entry.pw_gid)
        done = self._postfix("start")
        if done.returncode != 0 or not wait_for_port(self.port, 20):
            raise RuntimeError(f"postfix did not start: {done.stderr[-1000:]}{self.log_tail()}")
        pid_file = self.folder / "queue" / "pid" / "master.pid"
        self.master_pid = int(pid_file.read_text().split()[0])

    def log_tail(self, lines: int = 10) -> str:
        log = self.folder / "maillog"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def groups(self) -> dict[str, list[int]]:
        return {"postfix": [self.master_pid]}

    def failure(self) -> str | None:
        try:
            os.kill(self.master_pid, 0)
        except ProcessLookupError:
            return f"the postfix master exited:\n{self.log_tail()}"
        return None

    def stop(self) -> None:
        self._postfix("stop")
        deadline = time.monotonic() + 20
        while self.master_pid and time.monotonic() < deadline:
            try:
                os.kill(self.master_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)
