"""The template's own CI (.github/workflows/): lint-clean, least privilege, and covering every level.

The workflows go through the same validators as the generated ones (actionlint with shellcheck, zizmor
offline, the workflow schema, the pinning/timeout/permissions checks of tests/artifact_checks.py). Each test
job selects its level with a pytest marker expression in its MARKERS variable: together the jobs must select
every marker declared in pyproject.toml, and tests without a level marker, exactly once. The RAMPART_SHARD
selector (tests/conftest.py) must split a selection into disjoint shards that add up to all of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import conftest
import pytest
import yaml

from artifact_checks import run, tool, workflow_problems
from variants import REPO_ROOT

pytestmark = pytest.mark.fast

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
CI_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
RUNNER = "ubuntu-24.04"
MARKER_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z_][A-Za-z0-9_]*)")
SHARD_COUNT = re.compile(r"^\$\{\{\s*matrix\.shard\s*\}\}/(\d+)$")


def declared_markers() -> list[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entries = pyproject["tool"]["pytest"]["ini_options"]["markers"]
    return [entry.split(":", 1)[0].strip() for entry in entries]


def selects(expression: str, markers: set[str]) -> bool:
    """Whether pytest's `-m expression` selects a test carrying exactly ``markers``."""
    python: list[str] = []
    position = 0
    while position < len(expression.rstrip()):
        match = MARKER_TOKEN.match(expression, position)
        assert match, f"cannot read the marker expression {expression!r} at {expression[position:]!r}"
        token = match[1]
        python.append(token if token in ("(", ")", "and", "or", "not") else str(token in markers))
        position = match.end()
    result: bool = eval(" ".join(python), {"__builtins__": {}})  # only True/False/and/or/not/()
    return result


def workflow(path: Path = CI_WORKFLOW) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def test_workflows_pass_actionlint_zizmor_and_the_schema() -> None:
    assert WORKFLOWS, "no workflows in .github/workflows/"
    files = [str(path) for path in WORKFLOWS]
    checks = {
        "actionlint": [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-no-color", *files],
        "zizmor": [tool("zizmor"), "--offline", "--no-progress", *files],
        "workflow schema": [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
    }
    problems = []
    for name, command in checks.items():
        code, output = run(command, REPO_ROOT)
        if code != 0:
            problems.append(f"{name} failed:\n{output}")
    for path in WORKFLOWS:
        problems += [f"{path.name}: {problem}" for problem in workflow_problems(path)]
    assert not problems, "\n".join(problems)


def test_jobs_get_least_privilege_and_a_pinned_runner() -> None:
    for path in WORKFLOWS:
        loaded = workflow(path)
        assert loaded["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
        for name, job in loaded["jobs"].items():
            assert job.get("runs-on") == RUNNER, f"{path.name} job {name}: runs-on {RUNNER}"
            assert job.get("permissions") == {"contents": "read"}, f"{path.name} job {name}: contents: read"
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, (
                        f"{path.name} job {name}: checkout must not persist credentials"
                    )


def test_test_jobs_run_pytest_on_their_marker_expression() -> None:
    for name, job in workflow()["jobs"].items():
        runs = " ".join(str(step.get("run", "")) for step in job.get("steps", []))
        if "pytest" not in runs and "$PYTEST" not in runs:
            continue
        assert "MARKERS" in job.get("env", {}), f"job {name} runs pytest without a MARKERS expression"
        assert '-m "$MARKERS"' in runs, f'job {name} must run pytest with -m "$MARKERS"'


def test_jobs_together_select_every_level_exactly_once() -> None:
    expressions = {
        name: str(job["env"]["MARKERS"])
        for name, job in workflow()["jobs"].items()
        if "MARKERS" in job.get("env", {})
    }
    markers = declared_markers()
    assert markers, "pyproject.toml declares no markers"
    problems = []
    for carried in [{marker} for marker in markers] + [set()]:
        jobs = [name for name, expression in expressions.items() if selects(expression, carried)]
        label = f"tests marked {sorted(carried)[0]!r}" if carried else "tests without a level marker"
        if len(jobs) != 1:
            problems.append(f"{label} are selected by {len(jobs)} jobs {jobs}, not exactly one")
    assert not problems, "\n".join(problems)


def test_sharded_jobs_run_every_shard() -> None:
    for name, job in workflow()["jobs"].items():
        value = job.get("env", {}).get("RAMPART_SHARD")
        if value is None:
            continue
        match = SHARD_COUNT.match(str(value))
        assert match, f"job {name}: RAMPART_SHARD must be '${{{{ matrix.shard }}}}/N', not {value!r}"
        count = int(match[1])
        shards = job.get("strategy", {}).get("matrix", {}).get("shard")
        assert shards == list(range(1, count + 1)), f"job {name}: matrix.shard must be 1..{count}"
        assert job["strategy"].get("fail-fast") is False, (
            f"job {name}: one failing shard must not cancel the rest"
        )


def collected(shard: str | None, *selection: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RAMPART_SHARD", "PYTEST_ADDOPTS")}
    if shard is not None:
        env["RAMPART_SHARD"] = shard
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *selection],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f"collection failed (RAMPART_SHARD={shard}):\n{result.stdout}{result.stderr}"
    )
    return [line for line in result.stdout.splitlines() if "::" in line]


class FakeItem:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


class FakeConfig:
    """What the shard hook uses of pytest's config: the pytest_deselected hook."""

    def __init__(self) -> None:
        self.deselected: list[Any] = []
        self.hook = self

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected.extend(items)


def test_shards_are_disjoint_and_add_up_to_the_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    nodeids = [f"tests/test_{name}.py::test_{index}" for name in "zyx" for index in range(7)]
    picked = []
    for number in (1, 2, 3, 4):
        monkeypatch.setenv(conftest.SHARD_VARIABLE, f"{number}/4")
        items: list[Any] = [FakeItem(nodeid) for nodeid in nodeids]
        config = FakeConfig()
        conftest.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
        assert items, f"shard {number}/4 got nothing"
        assert len(items) + len(config.deselected) == len(nodeids), "every test is kept or deselected"
        picked += [item.nodeid for item in items]
    assert sorted(picked) == sorted(nodeids), "the shards do not add up to the selection exactly once"


@pytest.mark.parametrize("value", ["0/3", "4/3", "two", "1/0", "1:3"])
def test_a_malformed_shard_is_a_usage_error(value: str) -> None:
    with pytest.raises(pytest.UsageError, match="RAMPART_SHARD"):
        conftest.shard_of(value)


def test_shard_selector_applies_to_what_markers_selected() -> None:
    """End to end, in a pytest process of its own: the shard is taken from the -m selection."""
    selection = ("-m", "fast", "tests/test_questions.py")
    everything = collected(None, *selection)
    assert len(everything) >= 3, f"the unsharded selection collected {everything}"
    assert collected("2/3", *selection) == [
        test for test in everything if test in sorted(everything)[1::3]
    ], "RAMPART_SHARD=2/3 did not keep every third selected test, starting at the second"


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_the_template_repositorys_own_code_is_ruff_clean(command: list[str]) -> None:
    # What `make lint` runs (the rendered projects are linted by the render tests); Python blocks in the
    # docs' Markdown are formatted too.
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), *command, "."], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"ruff {' '.join(command)} failed:\n{result.stdout}{result.stderr}"
