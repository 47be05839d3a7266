from pathlib import Path

import pytest

from services.common.durations import format_duration, parse_duration
from services.common.settings import Settings, SettingsError, load_settings, parse_host_port


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("5d", 432000), ("0", 0), ("250ms", 0.25)],
)
def test_durations_parse_as_the_contract_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "1h 30m", "-1s"])
def test_invalid_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_duration_formatting_round_trips() -> None:
    for seconds in (1, 59, 300, 5400, 432000, 9600):
        assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert settings.amqp_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.amqp_prefix == "staffetta"
    assert str(settings.smtp_address) == "0.0.0.0:2525"
    assert str(settings.submission_address) == "0.0.0.0:2587"
    assert settings.submissions_address is None
    assert str(settings.http_address) == "0.0.0.0:8080"
    assert settings.max_sessions == 1000 and settings.max_sessions_per_ip == 100
    assert settings.trusted_networks == ["127.0.0.0/8", "::1/128"]
    assert settings.max_message_size == 26214400
    assert settings.max_recipients == 1000
    assert settings.remote_smtp_port == 25
    assert settings.smarthost_tls == "starttls"
    assert settings.retry_schedule == [300, 600, 1200, 2400, 4800, 9600, 14400]
    assert settings.max_queue_lifetime == 5 * 86400
    assert settings.delay_warning_after == 4 * 3600
    assert settings.maildir_root == Path("./var/mail")
    assert not settings.allow_plaintext_auth


def test_lists_and_durations_are_parsed_from_the_environment() -> None:
    settings = load_settings(
        {
            "STAFFETTA_LOCAL_DOMAINS": "Example.ORG., example.net",
            "STAFFETTA_RETRY_SCHEDULE": "1s,2s",
            "STAFFETTA_DNS_NAMESERVERS": "127.0.0.1:5353,::1",
            "STAFFETTA_MAX_QUEUE_LIFETIME": "1h30m",
            "STAFFETTA_SMARTHOST": "relay.example.com:587",
        }
    )
    assert settings.local_domains == ["example.org", "example.net"]
    assert settings.retry_schedule == [1, 2]
    assert [str(a) for a in settings.nameserver_addresses] == ["127.0.0.1:5353", "[::1]:53"]
    assert settings.max_queue_lifetime == 5400
    assert str(settings.smarthost_address) == "relay.example.com:587"


def test_every_problem_is_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "STAFFETTA_RETRY_SCHEDULE": "soon",
                "STAFFETTA_MAX_SESSIONS": "many",
                "STAFFETTA_SMARTHOST_TLS": "maybe",
                "STAFFETTA_TRUSTED_NETWORKS": "10.0.0.0/8,nonsense",
                "STAFFETTA_USERS_FILE": "/nonexistent/users",
                "STAFFETTA_NO_SUCH_THING": "1",
            }
        )
    problems = caught.value.problems
    assert all("\n" not in problem for problem in problems)
    joined = "\n".join(problems)
    for name in (
        "STAFFETTA_RETRY_SCHEDULE",
        "STAFFETTA_MAX_SESSIONS",
        "STAFFETTA_SMARTHOST_TLS",
        "STAFFETTA_TRUSTED_NETWORKS",
        "STAFFETTA_NO_SUCH_THING",
    ):
        assert name in joined


def test_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_settings({"STAFFETTA_ALIASES_FILE": str(tmp_path / "missing")})


def test_secrets_are_masked_in_the_description() -> None:
    settings = load_settings({"STAFFETTA_AMQP_URL": "amqp://user:s3cret@broker:5672/vhost"})
    described = settings.describe()
    assert described["STAFFETTA_AMQP_URL"] == "amqp://user:***@broker:5672/vhost"
    assert "s3cret" not in "".join(described.values())
    assert set(described) == {f"STAFFETTA_{name.upper()}" for name in Settings.model_fields}


def test_host_port_parsing() -> None:
    assert parse_host_port("[::1]:25").host == "::1"
    assert parse_host_port("example.com", default_port=25).port == 25
    with pytest.raises(ValueError):
        parse_host_port("example.com")
    with pytest.raises(ValueError):
        parse_host_port("host:99999")
