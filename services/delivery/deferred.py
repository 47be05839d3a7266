"""How old is the oldest deferred message? Tracked without browsing the retry queues.

Each worker remembers the jobs it deferred until they are due back (their
retry delay plus a grace period): by then the job has been picked up again,
by this worker (which forgets or re-records it) or by another (which records
it in turn). So every waiting job is remembered by some worker, and the
maximum of the gauge over the replicas is the age of the oldest deferred mail.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

GRACE = 120.0
MAX_TRACKED = 100_000

_Entry = tuple[float, float, str]  # (due or accepted first, the other, key): heap order


@dataclass
class DeferredTracker:
    grace: float = GRACE
    limit: int = MAX_TRACKED
    _jobs: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (due, accepted)
    # The same entries ordered by due time and by acceptance, so that the gauge, set
    # after every job, costs no pass over every waiting job (0.44 ms a job with 10,000).
    # An entry whose job was seen, deferred anew or forgotten stays behind until it
    # comes to the top (or the heaps are rebuilt): it is live only while it matches _jobs.
    _by_due: list[_Entry] = field(default_factory=list)  # (due, accepted, key)
    _by_accepted: list[_Entry] = field(default_factory=list)  # (accepted, due, key)

    def __len__(self) -> int:
        return len(self._jobs)

    def seen(self, key: str) -> None:
        """A job came back (whatever happens to it now, it is no longer waiting)."""
        self._jobs.pop(key, None)

    def deferred(self, key: str, accepted_at: float, now: float, delay: float) -> None:
        due = now + delay + self.grace
        self._jobs[key] = (due, accepted_at)
        if len(self._jobs) > self.limit:
            # Forget the jobs due back soonest: the oldest ones matter most here.
            for stale in sorted(self._jobs, key=lambda k: self._jobs[k][0])[
                : len(self._jobs) // 10
            ]:
                del self._jobs[stale]
        heapq.heappush(self._by_due, (due, accepted_at, key))
        heapq.heappush(self._by_accepted, (accepted_at, due, key))
        if len(self._by_due) > 2 * len(self._jobs) + 100:
            self._rebuild()

    def oldest_age(self, now: float) -> float:
        """Seconds since acceptance of the oldest job still waiting (0 when none)."""
        jobs, by_due, by_accepted = self._jobs, self._by_due, self._by_accepted
        while by_due and by_due[0][0] < now:
            due, accepted, key = heapq.heappop(by_due)
            if jobs.get(key) == (due, accepted):
                del jobs[key]
        while by_accepted:
            accepted, due, key = by_accepted[0]
            if jobs.get(key) == (due, accepted):
                return max(now - accepted, 0.0)
            heapq.heappop(by_accepted)
        return 0.0

    def _rebuild(self) -> None:
        """The heaps of the live entries only (amortised: when half of them are stale)."""
        self._by_due = [(due, accepted, key) for key, (due, accepted) in self._jobs.items()]
        self._by_accepted = [(accepted, due, key) for key, (due, accepted) in self._jobs.items()]
        heapq.heapify(self._by_due)
        heapq.heapify(self._by_accepted)
