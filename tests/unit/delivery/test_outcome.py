from services.common.envelope import DeliveryJob, RecipientResult
from services.delivery.outcome import RetryPolicy, decide, is_mail_loop, next_retry_delay

HOUR = 3600.0
POLICY = RetryPolicy(max_queue_lifetime=5 * 24 * HOUR, delay_warning_after=4 * HOUR)


def _job(**changes: object) -> DeliveryJob:
    job = DeliveryJob(
        queue_id="Q1",
        sender="s@src.test",
        recipients=["a@d.test", "b@d.test", "c@d.test"],
        route="relay",
        domain="d.test",
        accepted_at=1000.0,
    )
    return job.model_copy(update=changes)


def _result(recipient: str, action: str, status: str) -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        action=action,  # type: ignore[arg-type]
        status=status,
        diagnostic=f"{status[0]}50 {status} x",
        remote_mta="mx.d.test[127.0.0.2]",
    )


MIXED = [
    _result("a@d.test", "delivered", "2.0.0"),
    _result("b@d.test", "failed", "5.1.1"),
    _result("c@d.test", "deferred", "4.7.1"),
]


def test_mixed_results_split_into_bounce_and_retry() -> None:
    outcome = decide(_job(), MIXED, now=1010.0, attempt_started=1005.0, policy=POLICY)
    assert [r.recipient for r in outcome.delivered] == ["a@d.test"]
    assert outcome.bounce is not None
    assert outcome.bounce.kind == "failure"
    assert [r.recipient for r in outcome.bounce.results] == ["b@d.test"]
    assert outcome.bounce.sender == "s@src.test"
    assert outcome.retry is not None
    assert outcome.retry.recipients == ["c@d.test"]
    assert outcome.retry.attempts == 1
    assert outcome.retry.first_attempt_at == 1005.0
    assert "4.7.1" in outcome.retry.last_error
    assert outcome.delay_notice is None


def test_retry_keeps_the_first_attempt_time_and_counts_up() -> None:
    job = _job(attempts=3, first_attempt_at=1001.0, received_headers=4)
    outcome = decide(job, MIXED[2:], now=2000.0, attempt_started=1999.0, policy=POLICY)
    assert outcome.retry is not None
    assert outcome.retry.attempts == 4
    assert outcome.retry.first_attempt_at == 1001.0
    assert outcome.retry.received_headers == 4


def test_lifetime_expiry_fails_deferred_with_4_4_7() -> None:
    now = 1000.0 + POLICY.max_queue_lifetime
    outcome = decide(_job(delay_warned=True), MIXED, now=now, attempt_started=now, policy=POLICY)
    assert outcome.retry is None
    assert outcome.bounce is not None
    expired = [r for r in outcome.bounce.results if r.recipient == "c@d.test"]
    assert expired[0].action == "failed"
    assert expired[0].status == "4.4.7"
    assert expired[0].diagnostic == "450 4.7.1 x"
    assert len(outcome.expired) == 1


def test_just_before_lifetime_still_retries() -> None:
    now = 1000.0 + POLICY.max_queue_lifetime - 1
    outcome = decide(
        _job(delay_warned=True), MIXED[2:], now=now, attempt_started=now, policy=POLICY
    )
    assert outcome.retry is not None
    assert outcome.bounce is None


def test_delay_warning_once_after_the_threshold() -> None:
    early = decide(_job(), MIXED[2:], now=1000.0 + HOUR, attempt_started=0, policy=POLICY)
    assert early.delay_notice is None
    assert early.retry is not None and not early.retry.delay_warned

    late = decide(_job(), MIXED[2:], now=1000.0 + 4 * HOUR, attempt_started=0, policy=POLICY)
    assert late.delay_notice is not None
    assert late.delay_notice.kind == "delay"
    assert [r.action for r in late.delay_notice.results] == ["delayed"]
    assert late.retry is not None and late.retry.delay_warned

    again = decide(
        _job(delay_warned=True), MIXED[2:], now=1000.0 + 5 * HOUR, attempt_started=0, policy=POLICY
    )
    assert again.delay_notice is None


def test_delay_warning_disabled_by_zero() -> None:
    policy = RetryPolicy(max_queue_lifetime=POLICY.max_queue_lifetime, delay_warning_after=0)
    outcome = decide(_job(), MIXED[2:], now=1000.0 + 10 * HOUR, attempt_started=0, policy=policy)
    assert outcome.delay_notice is None


def test_null_sender_is_never_bounced_or_warned() -> None:
    now = 1000.0 + 4 * HOUR
    outcome = decide(_job(sender=""), MIXED, now=now, attempt_started=now, policy=POLICY)
    assert outcome.bounce is None
    assert outcome.delay_notice is None
    assert outcome.suppressed_bounce
    assert outcome.retry is not None


def test_all_delivered_needs_nothing_published() -> None:
    outcome = decide(_job(), MIXED[:1], now=1001.0, attempt_started=1000.0, policy=POLICY)
    assert (outcome.bounce, outcome.retry, outcome.delay_notice) == (None, None, None)


def test_mail_loop_by_received_headers() -> None:
    assert not is_mail_loop(_job(received_headers=50))
    assert is_mail_loop(_job(received_headers=51))


def test_retry_delay_follows_the_schedule_and_repeats_the_last_step() -> None:
    schedule = [300.0, 600.0, 1200.0]
    assert [next_retry_delay(schedule, n) for n in (1, 2, 3, 4, 9)] == [300, 600, 1200, 1200, 1200]
