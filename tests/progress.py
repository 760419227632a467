"""`make test`'s progress as it goes: per level, what runs, how many of how many, and the time elapsed.

pytest-xdist's controller sees each test's reports, with their markers, but never collects: the processes
that collect (the workers, or pytest itself without xdist) write the selected tests' levels to a file of
this run, and the controller reads it when its first line needs the totals.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

# The ladder's levels, by marker; a test is counted in the first level it is marked with.
LEVELS = {
    "fast": 1,
    "matrix": 2,
    "artifacts": 3,
    "smoke": 4,
    "update": 5,
    "cookiecutter": 6,
    "containers": 7,
    "fleet": 8,
}
UNMARKED = "unmarked"
# Levels whose tests take minutes: their starts are announced too, so a long silence says what runs.
SLOW_LEVELS = frozenset({"artifacts", "smoke", "update", "cookiecutter", "containers", "fleet"})


def level_of(markers: Iterable[str]) -> str:
    names = set(markers)
    return next((level for level in LEVELS if level in names), UNMARKED)


def label(level: str) -> str:
    return f"level {LEVELS[level]} {level}" if level in LEVELS else level


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def write_levels(path: Path, items: Iterable[pytest.Item]) -> None:
    """The selected tests' levels, for the controller; atomic, since every xdist worker writes the same."""
    levels = {item.nodeid: level_of(marker.name for marker in item.iter_markers()) for item in items}
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps(levels), encoding="utf-8")
    scratch.replace(path)


class LadderProgress:
    """Writes one line per finished test (and per started slow one) through pytest's terminal reporter."""

    def __init__(self, levels_file: Path, write_line: Callable[[str], object]) -> None:
        self.levels_file = levels_file
        self.write_line = write_line
        self.started = time.monotonic()
        self.totals: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.failed: set[str] = set()
        self.skipped: set[str] = set()
        self.seconds: Counter[str] = Counter()
        self._levels: dict[str, str] | None = None

    def levels(self) -> dict[str, str]:
        if self._levels is None and self.levels_file.is_file():
            self._levels = json.loads(self.levels_file.read_text(encoding="utf-8"))
            self.totals = Counter(self._levels.values())
            order = sorted(self.totals, key=lambda level: LEVELS.get(level, len(LEVELS) + 1))
            self.say("selected: " + ", ".join(f"{label(level)} {self.totals[level]}" for level in order))
        return self._levels or {}

    def level(self, nodeid: str, markers: Iterable[str] = ()) -> str:
        return self.levels().get(nodeid) or level_of(markers)

    def count(self, level: str) -> str:
        total = self.totals.get(level)
        return f"{self.done[level]}/{total if total else '?'}"

    def say(self, text: str) -> None:
        self.write_line(text)

    def started_test(self, nodeid: str) -> None:
        level = self.level(nodeid)
        if level in SLOW_LEVELS:
            elapsed = clock(time.monotonic() - self.started)
            self.say(f"[{label(level)} {self.count(level)} | {elapsed}] started {nodeid}")

    def report(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.skipped:
            self.skipped.add(report.nodeid)
        if report.when != "teardown":
            return
        level = self.level(report.nodeid, report.keywords)
        self.done[level] += 1
        if report.nodeid in self.failed:
            outcome = "FAILED"
        else:
            outcome = "skipped" if report.nodeid in self.skipped else "passed"
        self.failed.discard(report.nodeid)
        self.skipped.discard(report.nodeid)
        overall = f"{sum(self.done.values())}/{sum(self.totals.values()) or '?'}"
        elapsed = clock(time.monotonic() - self.started)
        self.say(
            f"[{label(level)} {self.count(level)} | all {overall} | {elapsed}] {outcome:7} {report.nodeid} "
            f"({clock(self.seconds.pop(report.nodeid, 0.0))})"
        )
