"""Moving-window counters that check several limits in ONE storage operation (hand-written: see below).

The ``limits`` strategies check one limit per call and need another call for the window statistics, so
three limits cost four storage operations per request (four Redis round trips). ``Windows.acquire``
checks every limit of a request at once, all or nothing (a refused request counts against no limit), and
returns the statistics the response headers need. ``limits`` still parses the limit strings and drives the
outbound throttle.

``MemoryWindows`` keeps the hit timestamps of each window in process memory (each replica on its own);
redis_windows.py, where present, keeps them in Redis sorted sets behind one Lua script.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    amount: int  # hits allowed per window
    seconds: int  # window length


class Verdict(NamedTuple):  # made on every request: a NamedTuple costs half a frozen dataclass
    refused: int | None  # index of the first window that is full, None when the hit was counted
    remaining: int  # hits left in the reported window (the refused one, else ``report``)
    reset_after: float  # seconds until the reported window frees one hit


class Windows(Protocol):
    async def acquire(self, windows: Sequence[Window], report: int) -> Verdict:
        """Count one hit in every window if none is full; describe ``windows[report]`` (or the full one)."""
        ...  # pragma: no cover

    async def clear(self) -> None:
        """Forget every hit (tests, and a reset after a limit change)."""
        ...  # pragma: no cover


class MemoryWindows:
    """Exact moving windows in process memory; idle windows are swept so memory stays bounded."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sweep_every: int = 10_000) -> None:
        self.clock = clock
        self.sweep_every = sweep_every
        self._hits: dict[str, deque[float]] = {}
        self._seconds: dict[str, int] = {}
        self._until_sweep = sweep_every

    async def acquire(self, windows: Sequence[Window], report: int) -> Verdict:
        now = self.clock()
        refused: int | None = None
        for index, window in enumerate(windows):
            hits = self._hits.get(window.key)
            if hits is None:
                continue
            horizon = now - window.seconds
            while hits and hits[0] <= horizon:
                hits.popleft()
            if refused is None and len(hits) >= window.amount:
                refused = index
        if refused is None:
            for window in windows:
                hits = self._hits.get(window.key)
                if hits is None:
                    hits = self._hits[window.key] = deque()
                    self._seconds[window.key] = window.seconds
                hits.append(now)
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._sweep(now)
        shown = windows[report if refused is None else refused]
        hits = self._hits.get(shown.key) or deque()
        # seconds - elapsed, not oldest + seconds - now: the latter rounds past the window (60.00000000000023
        # for a hit made now), which the RateLimit-Reset header's ceil turned into 61.
        reset_after = shown.seconds - (now - hits[0]) if hits else float(shown.seconds)
        return Verdict(refused, max(0, shown.amount - len(hits)), max(reset_after, 0.0))

    async def clear(self) -> None:
        self._hits.clear()
        self._seconds.clear()

    def _sweep(self, now: float) -> None:
        self._until_sweep = self.sweep_every
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self._seconds[key]]
        for key in idle:
            del self._hits[key]
            del self._seconds[key]
