"""How long the engine thread has been inside one batch, as the hang check needs it.

Wall time alone calls a starved worker hung: on a loaded CPU host, or in a low-priority cgroup or
scheduling class, a batch can wait seconds for a CPU without anything being wrong. So the clock
leaves out the time the thread was runnable but waiting for a CPU (Linux schedstat, field 2). Time
it ran or was blocked (a GPU sync, a lock, a sleep: the ways a real hang looks) still counts.
Where the kernel does not report schedstat the clock is plain wall time.
"""
from __future__ import annotations

import threading
import time
from typing import Optional, Tuple


def runqueue_wait_ns(tid: int) -> int:
    """Nanoseconds this process's thread `tid` has spent waiting for a CPU; 0 where unknown."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class BusyClock:
    """Started and stopped by the thread it measures; read from any thread."""

    def __init__(self):
        self._tid = 0
        self._since: Optional[float] = None
        self._wait0 = 0

    def start(self):
        self._tid = threading.get_native_id()
        self._wait0 = runqueue_wait_ns(self._tid)
        self._since = time.monotonic()

    def stop(self):
        self._since = None

    def read(self) -> Tuple[float, float]:
        """(ms busy, not counting the wait for a CPU; ms of that wait); (0, 0) when stopped."""
        since = self._since
        if since is None:
            return 0.0, 0.0
        wall = (time.monotonic() - since) * 1000
        waited = max(0.0, (runqueue_wait_ns(self._tid) - self._wait0) / 1e6)
        return max(0.0, wall - waited), min(waited, wall)
