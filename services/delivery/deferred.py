"""How old is the oldest deferred message? Tracked without browsing the retry queues.

Each worker remembers the jobs it deferred until they are due back (their
retry delay plus a grace period): by then the job has been picked up again,
by this worker (which forgets or re-records it) or by another (which records
it in turn). So every waiting job is remembered by some worker, and the
maximum of the gauge over the replicas is the age of the oldest deferred mail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GRACE = 120.0
MAX_TRACKED = 100_000


@dataclass
class DeferredTracker:
    grace: float = GRACE
    limit: int = MAX_TRACKED
    _jobs: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (due, accepted)

    def __len__(self) -> int:
        return len(self._jobs)

    def seen(self, key: str) -> None:
        """A job came back (whatever happens to it now, it is no longer waiting)."""
        self._jobs.pop(key, None)

    def deferred(self, key: str, accepted_at: float, now: float, delay: float) -> None:
        self._jobs[key] = (now + delay + self.grace, accepted_at)
        if len(self._jobs) > self.limit:
            # Forget the jobs due back soonest: the oldest ones matter most here.
            for stale in sorted(self._jobs, key=lambda k: self._jobs[k][0])[
                : len(self._jobs) // 10
            ]:
                del self._jobs[stale]

    def oldest_age(self, now: float) -> float:
        """Seconds since acceptance of the oldest job still waiting (0 when none)."""
        for key in [k for k, (due, _) in self._jobs.items() if due < now]:
            del self._jobs[key]
        oldest = min((accepted for _, accepted in self._jobs.values()), default=now)
        return max(now - oldest, 0.0)
