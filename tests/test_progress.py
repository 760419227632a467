"""`make test`'s progress lines (progress.py): per level, how many of how many, the outcome, elapsed."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

import pytest

from progress import LEVELS, LadderProgress, level_of
from variants import REPO_ROOT

pytestmark = pytest.mark.fast


def report(
    nodeid: str, when: Literal["setup", "call", "teardown"], outcome: Literal["passed", "failed", "skipped"]
) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x.py", 0, nodeid), {}, outcome, None, when, duration=1.0)


def finish(progress: LadderProgress, nodeid: str, outcome: Literal["passed", "failed", "skipped"]) -> None:
    if outcome == "skipped":
        progress.report(report(nodeid, "setup", "skipped"))
    else:
        progress.report(report(nodeid, "setup", "passed"))
        progress.report(report(nodeid, "call", outcome))
    progress.report(report(nodeid, "teardown", "passed"))


def test_each_finished_test_counts_in_its_level_and_the_whole_run(tmp_path: Path) -> None:
    levels = tmp_path / "levels.json"
    table = {"a::one": "fast", "b::two": "smoke", "b::three": "smoke"}
    levels.write_text(json.dumps(table), encoding="utf-8")
    lines: list[str] = []
    progress = LadderProgress(levels, lines.append)

    progress.started_test("a::one")  # a fast test's start is not announced
    finish(progress, "a::one", "passed")
    progress.started_test("b::two")
    finish(progress, "b::two", "failed")
    finish(progress, "b::three", "skipped")

    assert lines[0] == "selected: level 1 fast 1, level 4 smoke 2"
    assert "[level 1 fast 1/1 | all 1/3 |" in lines[1]
    assert "passed  a::one (0:03)" in lines[1]
    assert "[level 4 smoke 0/2 |" in lines[2]
    assert "started b::two" in lines[2]
    assert "[level 4 smoke 1/2 | all 2/3 |" in lines[3]
    assert "FAILED  b::two" in lines[3]
    assert "[level 4 smoke 2/2 | all 3/3 |" in lines[4]
    assert "skipped b::three" in lines[4]
    assert len(lines) == 5


def test_without_the_levels_file_markers_decide_and_totals_are_unknown(tmp_path: Path) -> None:
    lines: list[str] = []
    progress = LadderProgress(tmp_path / "missing.json", lines.append)
    progress.report(pytest.TestReport("c::four", ("c.py", 0, "c"), {"update": 1}, "passed", None, "teardown"))
    [line] = lines
    assert "[level 5 update 1/? | all 1/? |" in line


def test_the_first_level_marker_names_the_level() -> None:
    assert level_of(["parametrize", "smoke"]) == "smoke"
    assert level_of(["fast", "matrix"]) == "fast"
    assert level_of(["parametrize"]) == "unmarked"


def test_every_declared_marker_is_a_level_of_the_progress_lines() -> None:
    """A new level's marker must count as that level, not as "unmarked"."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [
        entry.split(":", 1)[0].strip() for entry in pyproject["tool"]["pytest"]["ini_options"]["markers"]
    ]
    assert set(declared) <= set(LEVELS), (
        f"markers without a level in progress.LEVELS: {set(declared) - set(LEVELS)}"
    )
