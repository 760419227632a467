"""Template test suite configuration: the ladder's markers, shared helpers on sys.path, closing summary."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from progress import LadderProgress, write_levels
from rendering import RUN_ID_VARIABLE, noted, recorded, start_run
from variants import REPO_ROOT

SUMMARY_LABELS = {
    "variants_rendered": "variants rendered and statically checked (level 2)",
    "lock_sets": "distinct shipped lockfiles consistent with their pyproject.toml (uv lock --check, level 2)",
    "artifacts_validated": "distinct deployment and CI artifacts through their validators (level 3)",
    "checkov_checks": "checkov checks passed on representative variants (level 3)",
    "distinct_apps": "distinct applications smoke-tested in-process (level 4)",
    "full_smokes": "variants given the full smoke: install, own tests, lint, typecheck, security, boot",
    "updates": "variants updated from the oldest release with user edits kept (level 5)",
    "images_built": "distinct images built with podman on local base images (level 7)",
    "containers_run": "images run with the manifests' hardening: probes, HEALTHCHECK, SIGTERM, backups",
    "compose_profiles": "compose profiles run through podman's Docker API with docker-compose (level 7)",
    "fleet": "fleet checks passed by three replicas behind HAProxy: limits, rolling restart (level 8)",
}


RUN_RECORD = REPO_ROOT / "build" / "tests" / "last-run.json"
_started = time.monotonic()
_progress: list[LadderProgress] = []  # the controller's


def levels_file() -> Path:
    """This run's test -> level table (the run ID comes from the controller; xdist workers inherit it)."""
    return REPO_ROOT / "build" / "tests" / "progress" / f"{os.environ.get(RUN_ID_VARIABLE, 'adhoc')}.json"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, before any xdist worker starts
        start_run()

        def write_line(line: str) -> None:
            # Looked up when first needed: the terminal reporter registers after this conftest's configure.
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(line)

        _progress.append(LadderProgress(levels_file(), write_line))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Whoever collects (each xdist worker, or pytest alone) records the selected tests' levels."""
    if session.items:
        write_levels(levels_file(), session.items)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    for progress in _progress:
        progress.started_test(nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for progress in _progress:
        progress.report(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record how long a whole, unfiltered run took (`make bench` reports it against the 30-minute goal)."""
    config = session.config
    if not hasattr(config, "workerinput"):
        levels_file().unlink(missing_ok=True)
    every_file = all(Path(arg).resolve() == REPO_ROOT / "tests" for arg in config.args)
    filtered = config.option.markexpr or config.option.keyword or os.environ.get(SHARD_VARIABLE)
    whole_run = every_file and not filtered
    if hasattr(config, "workerinput") or not whole_run or session.testscollected == 0:
        return
    RUN_RECORD.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "seconds": round(time.monotonic() - _started, 1),
        "tests": session.testscollected,
        "failed": session.testsfailed,
        "exit_status": int(exitstatus),
        "workers": getattr(config.option, "numprocesses", None) or 1,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RUN_RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


SHARD_VARIABLE = "RAMPART_SHARD"


def shard_of(value: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3): the second of three shards."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise pytest.UsageError(f"{SHARD_VARIABLE}={value!r}: expected K/N with 1 <= K <= N, e.g. 2/3")
    return int(match[1]), int(match[2])


@pytest.hookimpl(trylast=True)  # after -m/-k: shard what they selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``RAMPART_SHARD=K/N`` keeps every Nth selected test, starting at the Kth; the rest are deselected.

    The split is by position in the test IDs' sorted order, so every process (CI job, xdist worker) that
    collects the same tests picks the same ones, and the N shards together run each test exactly once.
    """
    value = os.environ.get(SHARD_VARIABLE, "")
    if not value:
        return
    shard, shards = shard_of(value)
    order = {nodeid: index for index, nodeid in enumerate(sorted(item.nodeid for item in items))}
    kept = [item for item in items if order[item.nodeid] % shards == shard - 1]
    deselected = [item for item in items if order[item.nodeid] % shards != shard - 1]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if hasattr(terminalreporter.config, "workerinput"):
        return
    notes = noted()
    counts = recorded()
    if not counts:
        return
    terminalreporter.section("Rampart test ladder")
    for kind, label in SUMMARY_LABELS.items():
        terminalreporter.write_line(f"{counts.get(kind, 0):5d}  {label}")
    for line in notes:
        terminalreporter.write_line(f"       {line}")


@pytest.fixture
def use_frontend(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path | None], None]:
    """Make cookiecutter import rampart_frontend from `root`.

    Cookiecutter imports an extension once per process, from the first folder on sys.path that has it, and
    pytest-cookies renders cookiecutter.json before the template folder is on sys.path at all. With None,
    only the folder cookiecutter itself adds (a fresh clone) may provide it.
    """

    def use(root: Path | None) -> None:
        monkeypatch.delitem(sys.modules, "rampart_frontend", raising=False)
        others = [entry for entry in sys.path if Path(entry or ".").resolve() != REPO_ROOT]
        monkeypatch.setattr(sys, "path", [str(root), *others] if root else others)

    return use


@pytest.fixture
def cookiecutter_config(tmp_path: Path) -> Path:
    """A user config that keeps cookiecutter's clones and replay files inside the test's folder."""
    config = tmp_path / "cookiecutter-config.yml"
    dirs = {"cookiecutters_dir": str(tmp_path / "cookiecutters"), "replay_dir": str(tmp_path / "replay")}
    config.write_text(yaml.safe_dump(dirs), encoding="utf-8")
    return config
