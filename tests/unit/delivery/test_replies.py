from services.delivery.replies import (
    SmtpReply,
    action_of,
    local_result,
    result_from_reply,
    status_of,
)


def test_enhanced_code_is_read_from_the_reply_text() -> None:
    reply = SmtpReply(550, "5.1.1 <x@y.test>: no such user")
    assert reply.enhanced == "5.1.1"
    assert status_of(reply) == "5.1.1"
    assert action_of(reply) == "failed"
    assert reply.diagnostic == "550 5.1.1 <x@y.test>: no such user"


def test_defaults_when_no_enhanced_code_or_a_mismatched_class() -> None:
    assert status_of(SmtpReply(550, "no such user")) == "5.0.0"
    assert status_of(SmtpReply(451, "try later")) == "4.0.0"
    assert status_of(SmtpReply(451, "5.1.1 inconsistent")) == "4.0.0"
    assert status_of(SmtpReply(250, "ok")) == "2.0.0"
    assert SmtpReply(550, "5.1.1x garbage").enhanced is None


def test_actions_by_reply_class() -> None:
    assert action_of(SmtpReply(250, "2.0.0 ok")) == "delivered"
    assert action_of(SmtpReply(251, "forwarded")) == "delivered"
    assert action_of(SmtpReply(421, "4.3.2 bye")) == "deferred"
    assert action_of(SmtpReply(554, "5.7.1 denied")) == "failed"


def test_multi_line_reply_becomes_one_diagnostic_line() -> None:
    reply = SmtpReply(550, "5.7.1 first line\nsecond line")
    assert reply.diagnostic == "550 5.7.1 first line second line"
    result = result_from_reply("a@b.test", reply, "mx.b.test[127.0.0.2]")
    assert result.action == "failed"
    assert result.status == "5.7.1"
    assert result.remote_mta == "mx.b.test[127.0.0.2]"


def test_local_results_have_no_diagnostic() -> None:
    assert local_result("a@b.test", "5.1.10").action == "failed"
    assert local_result("a@b.test", "4.4.3").action == "deferred"
    assert local_result("a@b.test", "2.0.0").action == "delivered"
    assert local_result("a@b.test", "5.1.2").diagnostic == ""
