from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from services.delivery.deferred import GRACE, MAX_TRACKED, DeferredTracker


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


@dataclass
class EveryJobTracker:
    """The tracker as it was: a pass over every waiting job for each gauge reading."""

    grace: float = GRACE
    limit: int = MAX_TRACKED
    jobs: dict[str, tuple[float, float]] = field(default_factory=dict)

    def seen(self, key: str) -> None:
        self.jobs.pop(key, None)

    def deferred(self, key: str, accepted_at: float, now: float, delay: float) -> None:
        self.jobs[key] = (now + delay + self.grace, accepted_at)
        if len(self.jobs) > self.limit:
            for stale in sorted(self.jobs, key=lambda k: self.jobs[k][0])[: len(self.jobs) // 10]:
                del self.jobs[stale]

    def oldest_age(self, now: float) -> float:
        for key in [k for k, (due, _) in self.jobs.items() if due < now]:
            del self.jobs[key]
        oldest = min((accepted for _, accepted in self.jobs.values()), default=now)
        return max(now - oldest, 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_same_ages_as_a_pass_over_every_job(seed: int) -> None:
    chooser = random.Random(seed)
    limit = chooser.choice([20, 300, MAX_TRACKED])
    tracker, reference = DeferredTracker(limit=limit), EveryJobTracker(limit=limit)
    now = 1_000_000.0
    keys = [f"Q{index}/relay/d{index % 7}.test" for index in range(chooser.choice([5, 60, 400]))]
    for _ in range(6000):
        step = chooser.random()
        key = chooser.choice(keys)
        if step < 0.4:
            # Jobs accepted up to days ago, often at the same second; delays from a schedule.
            accepted = now - chooser.choice([0, 0, 1, 60, 3600, 86400 * 3]) - chooser.randrange(3)
            delay = chooser.choice([0.0, 1.0, 60.0, 300.0, 3600.0])
            tracker.deferred(key, accepted, now, delay)
            reference.deferred(key, accepted, now, delay)
        elif step < 0.7:
            tracker.seen(key)
            reference.seen(key)
        else:
            now += chooser.choice([0.0, 0.001, 1.0, 30.0, 500.0, 4000.0, -0.5])
            assert tracker.oldest_age(now) == reference.oldest_age(now)
            assert dict(tracker._jobs) == reference.jobs
        assert len(tracker) == len(reference.jobs)
    assert len(tracker._by_due) <= 2 * len(tracker) + 101  # stale entries do not pile up


def test_entries_of_jobs_seen_again_do_not_pile_up() -> None:
    tracker = DeferredTracker()
    tracker.deferred("old", accepted_at=0, now=0, delay=10**9)  # keeps the heaps' tops busy
    for index in range(10_000):
        tracker.deferred(f"k{index}", accepted_at=index, now=index, delay=3600)
        tracker.seen(f"k{index}")
        assert tracker.oldest_age(index) == index
    assert len(tracker) == 1
    assert len(tracker._by_due) <= 102
    assert len(tracker._by_accepted) <= 102
