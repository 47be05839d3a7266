"""normalize_domain keeps the IDN conversions it made; the answers must not change."""

from __future__ import annotations

import random

from services.common.addressing import normalize_domain, split_address


def reference_normalize_domain(domain: str) -> str:
    """The function before the cache: the idna codec on every call."""
    cleaned = domain.strip().rstrip(".").lower()
    if cleaned.startswith("[") or cleaned.isascii():
        return cleaned
    try:
        return cleaned.encode("idna").decode("ascii")
    except UnicodeError:
        return cleaned


LETTERS = "abcxyzüöäßéèçñåøæ中文字日本語한국ДЖЯλπ😀✉ÜÖÄÉ"
SPECIAL = [
    "bücher.example",
    "BÜCHER.Example.",
    " bücher.example ",
    "bücher.example. .",
    "xn--bcher-kva.example",
    "[ü]",
    "ü..example",
    ".ü.example",
    "ü" * 70 + ".example",  # a label longer than 63: the codec refuses it
    "ü." * 130 + "example",
    "\u00ad.example",  # a soft hyphen: mapped to nothing
    "ﬁ.example",  # a ligature: nameprep maps it
    "😀.example",
    "\ud800.example",  # a lone surrogate
    "ß.example",
    "İ.example",
    "\u200d.example",
]


def random_domain(rng: random.Random) -> str:
    labels = [
        "".join(rng.choice(LETTERS) for _ in range(rng.randint(0, 12)))
        for _ in range(rng.randint(1, 4))
    ]
    return ".".join(labels) + rng.choice(["", ".", ". ", "  "])


def test_idn_domains_normalise_as_without_the_cache() -> None:
    rng = random.Random(5)
    domains = SPECIAL + [random_domain(rng) for _ in range(3_000)]  # beyond the cache size
    for _ in range(2):
        for domain in domains + SPECIAL:
            assert normalize_domain(domain) == reference_normalize_domain(domain), domain
    for domain in rng.sample(domains, 500):
        assert split_address(f"User@{domain}") == ("User", reference_normalize_domain(domain))
