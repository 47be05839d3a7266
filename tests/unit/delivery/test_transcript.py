from services.delivery.replies import SmtpReply
from services.delivery.transcript import Transcript, judge

MTA = "mx1.d.test[127.0.0.2]"
RCPTS = ["a@d.test", "b@d.test"]


def _ok() -> SmtpReply:
    return SmtpReply(250, "2.1.5 Ok")


def test_refused_connection_defers_and_moves_on() -> None:
    verdict = judge(Transcript(MTA, error="connection refused", error_phase="connect"), RCPTS)
    assert verdict.try_next
    assert {r.status for r in verdict.results.values()} == {"4.4.1"}


def test_421_greeting_moves_on() -> None:
    transcript = Transcript(MTA, reply=SmtpReply(421, "4.3.2 busy"), reply_phase="greeting")
    verdict = judge(transcript, RCPTS)
    assert verdict.try_next
    assert verdict.of("deferred") == RCPTS
    assert verdict.results["a@d.test"].diagnostic == "421 4.3.2 busy"


def test_5xx_at_mail_fails_everyone_and_stops() -> None:
    transcript = Transcript(MTA, reply=SmtpReply(553, "5.7.1 sender denied"), reply_phase="mail")
    verdict = judge(transcript, RCPTS)
    assert not verdict.try_next
    assert verdict.of("failed") == RCPTS


def test_refused_auth_defers_instead_of_bouncing() -> None:
    transcript = Transcript(MTA, reply=SmtpReply(535, "5.7.8 bad credentials"), reply_phase="auth")
    verdict = judge(transcript, RCPTS)
    assert verdict.of("deferred") == RCPTS
    assert verdict.results["a@d.test"].status == "4.7.0"


def test_per_recipient_results_after_data() -> None:
    transcript = Transcript(
        MTA,
        rcpt={"a@d.test": _ok(), "b@d.test": SmtpReply(550, "5.1.1 no such user")},
        data_reply=SmtpReply(250, "2.0.0 queued"),
    )
    verdict = judge(transcript, RCPTS)
    assert not verdict.try_next
    assert verdict.of("delivered") == ["a@d.test"]
    assert verdict.results["b@d.test"].status == "5.1.1"
    assert verdict.results["a@d.test"].remote_mta == MTA


def test_every_rcpt_temporary_moves_on() -> None:
    later = SmtpReply(451, "4.7.1 greylisted")
    verdict = judge(Transcript(MTA, rcpt=dict.fromkeys(RCPTS, later)), RCPTS)
    assert verdict.try_next
    assert verdict.of("deferred") == RCPTS


def test_mixed_rcpt_failures_without_acceptance_stop() -> None:
    rcpt = {"a@d.test": SmtpReply(451, "4.7.1 later"), "b@d.test": SmtpReply(550, "5.1.1 no")}
    verdict = judge(Transcript(MTA, rcpt=rcpt), RCPTS)
    assert not verdict.try_next
    assert verdict.of("deferred") == ["a@d.test"]
    assert verdict.of("failed") == ["b@d.test"]


def test_temporary_data_failure_defers_accepted_and_moves_on() -> None:
    transcript = Transcript(
        MTA, rcpt=dict.fromkeys(RCPTS, _ok()), data_reply=SmtpReply(452, "4.3.1 full")
    )
    verdict = judge(transcript, RCPTS)
    assert verdict.try_next
    assert {r.status for r in verdict.results.values()} == {"4.3.1"}


def test_connection_lost_during_data_defers() -> None:
    transcript = Transcript(MTA, rcpt=dict.fromkeys(RCPTS, _ok()), error="lost", error_phase="data")
    verdict = judge(transcript, RCPTS)
    assert verdict.try_next
    assert {r.status for r in verdict.results.values()} == {"4.4.2"}


def test_permanent_data_failure_fails_accepted() -> None:
    transcript = Transcript(
        MTA, rcpt=dict.fromkeys(RCPTS, _ok()), data_reply=SmtpReply(554, "5.6.0 bad content")
    )
    verdict = judge(transcript, RCPTS)
    assert not verdict.try_next
    assert verdict.of("failed") == RCPTS


def test_refused_here_fails_without_a_remote_diagnostic() -> None:
    verdict = judge(Transcript(MTA, refused_here="5.6.7"), RCPTS)
    assert not verdict.try_next
    assert {(r.action, r.status, r.diagnostic) for r in verdict.results.values()} == {
        ("failed", "5.6.7", "")
    }


def test_reusable_only_after_a_clean_end() -> None:
    assert Transcript(MTA, rcpt={"a@d.test": _ok()}, data_reply=_ok()).reusable
    assert not Transcript(MTA, error="lost", error_phase="data").reusable
    assert not Transcript(MTA, rcpt={"a@d.test": SmtpReply(421, "4.3.2 bye")}).reusable
    assert not Transcript(MTA, reply=SmtpReply(554, "no"), reply_phase="greeting").reusable


def test_5xx_greeting_skips_the_host_and_defers() -> None:
    reply = SmtpReply(554, "5.3.2 no service for you")
    verdict = judge(Transcript(MTA, reply=reply, reply_phase="greeting"), RCPTS)
    assert verdict.try_next
    assert verdict.of("deferred") == RCPTS
    assert verdict.results["a@d.test"].status == "4.3.2"
    assert verdict.results["a@d.test"].diagnostic == "554 5.3.2 no service for you"
