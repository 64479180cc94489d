"""How long to wait before trying the service again: capped exponential backoff, jittered, within a total budget.

Every retry loop of the remote path uses one ``Backoff``: a request retried
after a 429/5xx, a submission whose answer was lost, a lookup through an
outage. The n-th wait is drawn from ``[cap/2, cap]`` with ``cap = min(first_s *
2**n, longest_s)`` ("equal jitter": never a burst, never a thundering herd of
submitters in step); a ``Retry-After`` longer than that is honoured. Once the
next wait would end past ``budget_s`` from the first try, ``wait`` returns
False: the caller gives up (the run pauses, and resumes later).

The waits are plain ``time.sleep`` in the caller's thread, so a SIGTERM or
Ctrl-C ends them at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        first_s: float,
        longest_s: float,
        budget_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first_s, self.longest_s, self.budget_s = first_s, max(longest_s, first_s), budget_s
        self._clock, self._sleep, self._rng = clock, sleep, rng
        self.started = clock()
        self.waits = 0

    def next_wait_s(self, at_least_s: float = 0.0) -> float:
        """The next wait (jittered, capped; at least ``at_least_s`` but never past ``longest_s``)."""
        cap = min(self.first_s * 2 ** min(self.waits, 60), self.longest_s)
        jittered = cap / 2 + self._rng() * cap / 2
        return min(max(jittered, at_least_s), self.longest_s)

    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def wait(self, at_least_s: float = 0.0) -> bool:
        """Sleep before the next try; False (without sleeping) when the budget does not allow another."""
        wait_s = self.next_wait_s(at_least_s)
        if self.elapsed_s() + wait_s > self.budget_s:
            return False
        self.waits += 1
        self._sleep(wait_s)
        return True


__all__ = ["Backoff"]
