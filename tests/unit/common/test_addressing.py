import pytest

from services.common.addressing import (
    AliasLoop,
    RecipientDirectory,
    is_safe_local_part,
    normalize_domain,
    parse_alias_lines,
    split_address,
)


def test_domains_normalise_case_dots_and_idn() -> None:
    assert normalize_domain("Example.ORG.") == "example.org"
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    assert split_address("User@Bücher.Example") == ("User", "xn--bcher-kva.example")


@pytest.mark.parametrize("local", ["", ".", "..", "a/b", "a..b", "a\x00b", "a\nb", "a\\b"])
def test_unsafe_local_parts(local: str) -> None:
    assert not is_safe_local_part(local)


def test_ordinary_local_parts_are_safe() -> None:
    assert is_safe_local_part("john.doe+tag")


def test_aliases_expand_recursively_and_deduplicate() -> None:
    table = parse_alias_lines(
        [
            "# team aliases",
            "team@example.org: alice@example.org, ops@example.org",
            "ops@example.org: bob@example.org, alice@example.org, oncall@remote.test",
        ]
    )
    directory = RecipientDirectory(frozenset({"example.org"}), None, table)
    assert directory.expand("Team@Example.org") == [
        "alice@example.org",
        "bob@example.org",
        "oncall@remote.test",
    ]
    assert directory.expand("carol@example.org") == ["carol@example.org"]


def test_alias_loops_and_depth_are_refused() -> None:
    loop = RecipientDirectory(
        frozenset({"x.test"}), None, parse_alias_lines(["a@x.test: b@x.test", "b@x.test: a@x.test"])
    )
    with pytest.raises(AliasLoop):
        loop.expand("a@x.test")
    chain = [f"a{i}@x.test: a{i + 1}@x.test" for i in range(12)]
    deep = RecipientDirectory(frozenset({"x.test"}), None, parse_alias_lines(chain))
    with pytest.raises(AliasLoop):
        deep.expand("a0@x.test")
    shallow = RecipientDirectory(frozenset({"x.test"}), None, parse_alias_lines(chain[:10]))
    assert shallow.expand("a0@x.test") == ["a10@x.test"]


def test_recipients_file_and_aliases_decide_existence() -> None:
    directory = RecipientDirectory(
        frozenset({"example.org"}),
        frozenset({"alice@example.org"}),
        parse_alias_lines(["postmaster@example.org: alice@example.org"]),
    )
    assert directory.local_recipient_exists("ALICE@example.org")
    assert directory.local_recipient_exists("postmaster@example.org")
    assert not directory.local_recipient_exists("mallory@example.org")


def test_bad_alias_lines_are_reported_with_their_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_alias_lines(["a@x.test: b@x.test", "no colon here"])
