from services.delivery.deferred import DeferredTracker


def test_oldest_waiting_job_until_it_is_due_back() -> None:
    tracker = DeferredTracker(grace=10)
    assert tracker.oldest_age(1000) == 0
    tracker.deferred("old", accepted_at=100, now=1000, delay=300)
    tracker.deferred("new", accepted_at=900, now=1000, delay=60)
    assert tracker.oldest_age(1000) == 900
    assert tracker.oldest_age(1200) == 1100
    assert tracker.oldest_age(1311) == 0  # due back at 1310: another worker has it now
    assert len(tracker) == 0


def test_a_job_seen_again_is_no_longer_waiting() -> None:
    tracker = DeferredTracker(grace=10)
    tracker.deferred("a", accepted_at=0, now=100, delay=60)
    tracker.deferred("b", accepted_at=50, now=100, delay=60)
    tracker.seen("a")
    assert tracker.oldest_age(120) == 70
    tracker.deferred("b", accepted_at=50, now=170, delay=600)  # deferred once more
    assert tracker.oldest_age(700) == 650


def test_memory_is_bounded() -> None:
    tracker = DeferredTracker(limit=100)
    for index in range(150):
        tracker.deferred(str(index), accepted_at=index, now=1000, delay=index)
    assert len(tracker) <= 100
    assert tracker.oldest_age(1000) >= 900  # the long-waiting ones are kept
