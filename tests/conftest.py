"""Template test suite configuration: the ladder's markers, shared helpers on sys.path, closing summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rendering import recorded, start_run

SUMMARY_LABELS = {
    "variants_rendered": "variants rendered and statically checked (level 2)",
    "artifacts_validated": "distinct deployment and CI artifacts through their validators (level 3)",
    "checkov_checks": "checkov checks passed on representative variants (level 3)",
    "distinct_apps": "distinct applications smoke-tested in-process (level 4)",
    "full_smokes": "variants given the full smoke: install, own tests, lint, typecheck, security, boot",
}


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, before any xdist worker starts
        start_run()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if hasattr(terminalreporter.config, "workerinput"):
        return
    counts = recorded()
    if not counts:
        return
    terminalreporter.section("Rampart test ladder")
    for kind, label in SUMMARY_LABELS.items():
        terminalreporter.write_line(f"{counts.get(kind, 0):5d}  {label}")
