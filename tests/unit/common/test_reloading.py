"""Recipients and aliases files are picked up when they change."""

from __future__ import annotations

from pathlib import Path

from services.common.reloading import CHECK_INTERVAL, ReloadingDirectory


def test_changes_are_picked_up_after_the_check_interval(tmp_path: Path) -> None:
    recipients = tmp_path / "recipients"
    recipients.write_text("alice@local.test\n")
    aliases = tmp_path / "aliases"
    aliases.write_text("team@local.test: alice@local.test\n")
    clock = [0.0]
    source = ReloadingDirectory(["local.test"], recipients, aliases, now=lambda: clock[0])
    assert not source.current().local_recipient_exists("bob@local.test")

    recipients.write_text("alice@local.test\nbob@local.test\n")
    aliases.write_text("team@local.test: alice@local.test\nall@local.test: team@local.test\n")
    assert not source.current().local_recipient_exists("bob@local.test")  # not checked yet
    clock[0] += CHECK_INTERVAL
    assert source.current().local_recipient_exists("bob@local.test")
    assert source.current().is_alias("all@local.test")


def test_a_broken_rewrite_keeps_the_last_good_tables(tmp_path: Path) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("team@local.test: alice@local.test\n")
    clock = [0.0]
    source = ReloadingDirectory(["local.test"], None, aliases, now=lambda: clock[0])
    aliases.write_text("this line has no colon and is longer than before\n")
    clock[0] += CHECK_INTERVAL
    assert source.current().is_alias("team@local.test")
    aliases.unlink()
    clock[0] += CHECK_INTERVAL
    assert source.current().is_alias("team@local.test")
