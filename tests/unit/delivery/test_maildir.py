import re
from pathlib import Path

import pytest

from services.delivery.maildir import Maildir, UnsafeMailbox, mailbox_path, to_lf, unique_name


def test_unique_name_has_the_maildir_parts() -> None:
    name = unique_name("relay:1/x", now=1700000000.25, pid=42, sequence=7, random_hex="ab12")
    assert name == "1700000000.M250000P42Q7Rab12.relay\\0721\\057x"


def test_mailbox_path_is_lower_cased(tmp_path: Path) -> None:
    assert mailbox_path(tmp_path, "John.Doe@Example.TEST") == tmp_path / "example.test/john.doe"


@pytest.mark.parametrize("address", ["../x@d.test", "a/b@d.test", "..@d.test", "a\x01@d.test"])
def test_unsafe_local_parts_are_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(UnsafeMailbox):
        mailbox_path(tmp_path, address)


def test_crlf_becomes_lf_only() -> None:
    assert to_lf(b"a\r\nb\rc\n") == b"a\nb\rc\n"


def test_deliver_writes_one_file_in_new(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path, "relay.test")
    body = b"Subject: hi\r\n\r\nline\r\n"
    first = maildir.deliver("User@D.test", body)
    second = maildir.deliver("user@d.test", body)
    box = tmp_path / "d.test" / "user"
    assert first.parent == box / "new"
    assert first != second
    assert first.read_bytes() == b"Subject: hi\n\nline\n"
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
    assert list((box / "tmp").iterdir()) == []
    assert re.fullmatch(r"\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\.relay\.test", first.name)


def test_missing_folders_are_made_when_a_write_needs_them(tmp_path: Path) -> None:
    box = tmp_path / "d.test" / "user"
    (box / "tmp").mkdir(parents=True)  # new/ and cur/ gone, e.g. removed by hand
    path = Maildir(tmp_path, "relay.test").store("user@d.test", b"line\n")
    assert path.parent == box / "new"
    assert path.read_bytes() == b"line\n"
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
