"""Level 3 for deploy/monitoring/: `promtool check rules` and `promtool test rules` (the rules' own unit
tests, alerts.test.yml) where promtool is on PATH (Debian package `prometheus`), and structural checks of
the rules and the Grafana dashboard that always run; each distinct rendered file is checked once.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rendering import render
from variants import DEFAULT_VARIANT, PAIRWISE_VARIANTS, UNUSUAL_ANSWERS

pytestmark = pytest.mark.artifacts

# Every value of every question (pairwise covers them all) and free-text answers that change the slug.
VARIANTS = [DEFAULT_VARIANT, {**DEFAULT_VARIANT, **UNUSUAL_ANSWERS}, *PAIRWISE_VARIANTS]
RULES = "deploy/monitoring/alerts.yml"
RULE_TESTS = "deploy/monitoring/alerts.test.yml"
DASHBOARD = "deploy/monitoring/dashboard.json"
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
GRAFANA_BUILTIN_SOURCE = "-- Grafana --"
GRID_WIDTH = 24


@cache
def distinct(relative: str) -> tuple[Path, ...]:
    """One rendered project per distinct content of ``relative`` across the variants."""
    projects: dict[str, Path] = {}
    for answers in VARIANTS:
        project = render(answers)
        projects.setdefault(hashlib.sha256((project / relative).read_bytes()).hexdigest(), project)
    return tuple(projects.values())


def slug_of(project: Path) -> str:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return str(answers["project_slug"])


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not on PATH (`make promtool` unpacks Debian's); the structural checks ran")
    return path


def rule_problems(document: Any, slug: str) -> list[str]:
    if not isinstance(document, dict) or set(document) != {"groups"}:
        return ["the top level must be exactly {groups: [...]}"]
    problems = []
    group_names = [group.get("name") for group in document["groups"]]
    if len(group_names) != len(set(group_names)) or not all(group_names):
        problems.append(f"group names must be present and unique: {group_names}")
    alerts = [rule for group in document["groups"] for rule in group.get("rules", []) if "alert" in rule]
    if not alerts:
        problems.append("no alerting rules")
    for rule in alerts:
        name = rule["alert"]
        expr = rule.get("expr", "")
        if f'job="{slug}"' not in expr:
            problems.append(f"{name}: expr does not select job={slug!r}")
        if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
            problems.append(f"{name}: unbalanced brackets in expr")
        if not DURATION.match(str(rule.get("for", ""))):
            problems.append(f"{name}: `for` must be a duration such as 5m, got {rule.get('for')!r}")
        labels = rule.get("labels", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        if labels.get("service") != slug:
            problems.append(f"{name}: label service must be {slug!r}")
        annotations = rule.get("annotations", {})
        missing = {"summary", "description", "runbook_url"} - set(annotations)
        if missing:
            problems.append(f"{name}: missing annotations {sorted(missing)}")
        elif not re.search(r"/RUNBOOK\.md#[a-z0-9-]+$", annotations["runbook_url"]):
            problems.append(f"{name}: runbook_url must point at a RUNBOOK.md section")
    return problems


def _walk(value: Any) -> Iterator[Any]:
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _walk(child)


def _panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [panel for item in items for panel in (item, *_panels(item.get("panels", [])))]


def dashboard_problems(board: Any, slug: str) -> list[str]:
    problems = []
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in board:
            problems.append(f"no {key!r}")
    if problems:
        return problems
    if board.get("id") is not None:
        problems.append("`id` must be null: Grafana assigns it on import")
    if not 0 < len(board["uid"]) <= 40:
        problems.append(f"uid must be 1-40 characters: {board['uid']!r}")
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    source = next((v for v in variables.values() if v["type"] == "datasource"), None)
    if source is None or source.get("query") != "prometheus":
        return [*problems, "no Prometheus data source variable"]
    reference = "${" + source["name"] + "}"
    if variables.get("job", {}).get("query") != slug:
        problems.append(f"the job variable must default to {slug!r}")
    for value in _walk(board):
        if isinstance(value, dict) and isinstance(value.get("datasource"), dict):
            uid = value["datasource"].get("uid")
            if uid not in (reference, GRAFANA_BUILTIN_SOURCE):
                problems.append(f"fixed data source uid {uid!r} (use {reference})")
    panels = _panels(board["panels"])
    ids = [panel.get("id") for panel in panels]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"panel ids must be present and unique: {ids}")
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title", "?")
        x, y, w, h = (panel.get("gridPos", {}).get(key, 0) for key in ("x", "y", "w", "h"))
        if x + w > GRID_WIDTH or w < 1 or h < 1:
            problems.append(f"{title}: gridPos {x, y, w, h} does not fit a {GRID_WIDTH}-column grid")
        cells = {(column, line) for column in range(x, x + w) for line in range(y, y + h)}
        clashes = sorted({occupied[cell] for cell in cells if cell in occupied})
        if clashes:
            problems.append(f"{title}: overlaps {clashes}")
        occupied.update(dict.fromkeys(cells, title))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{title}: no queries")
        ref_ids = [target.get("refId") for target in targets]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"{title}: refIds must be unique")
        for target in targets:
            expr = target.get("expr", "")
            if 'job="$job"' not in expr:
                problems.append(f'{title}: query does not select job="$job": {expr}')
    return problems


def test_rules_are_well_formed() -> None:
    problems = []
    for project in distinct(RULES):
        document = yaml.safe_load((project / RULES).read_text(encoding="utf-8"))
        problems += [f"{project.name}/{RULES}: {p}" for p in rule_problems(document, slug_of(project))]
    assert not problems, "\n".join(problems)


def test_every_alert_has_a_firing_unit_test() -> None:
    problems = []
    for project in dict.fromkeys(distinct(RULES) + distinct(RULE_TESTS)):
        rules = yaml.safe_load((project / RULES).read_text(encoding="utf-8"))
        cases = yaml.safe_load((project / RULE_TESTS).read_text(encoding="utf-8"))
        alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
        firing = {
            check["alertname"]
            for case in cases["tests"]
            for check in case.get("alert_rule_test", [])
            if check.get("exp_alerts")
        }
        if alerts - firing:
            problems.append(f"{project.name}: no test shows these alerts firing: {sorted(alerts - firing)}")
    assert not problems, "\n".join(problems)


def test_dashboard_is_well_formed() -> None:
    problems = []
    for project in distinct(DASHBOARD):
        board = json.loads((project / DASHBOARD).read_text(encoding="utf-8"))
        problems += [f"{project.name}/{DASHBOARD}: {p}" for p in dashboard_problems(board, slug_of(project))]
    assert not problems, "\n".join(problems)


def test_rules_pass_promtool_check() -> None:
    files = [str(project / RULES) for project in distinct(RULES)]
    result = subprocess.run(
        [promtool(), "check", "rules", *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests() -> None:
    executable = promtool()
    failures = []
    for project in dict.fromkeys(distinct(RULES) + distinct(RULE_TESTS)):
        result = subprocess.run(
            [executable, "test", "rules", Path(RULE_TESTS).name],
            cwd=project / Path(RULE_TESTS).parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            failures.append(f"{project.name}:\n{result.stdout}{result.stderr}")
    assert not failures, "\n".join(failures)


def test_structural_checks_catch_broken_files() -> None:
    """The checks above must be able to fail: each seeded mistake is reported."""
    project = distinct(RULES)[0]
    slug = slug_of(project)
    rules = yaml.safe_load((project / RULES).read_text(encoding="utf-8"))
    broken_rule = rules["groups"][0]["rules"][0]
    broken_rule["for"] = "five minutes"
    del broken_rule["labels"]["severity"]
    broken_rule["annotations"]["runbook_url"] = "https://example.com/wiki"
    assert len(rule_problems(rules, slug)) == 3
    board = json.loads((project / DASHBOARD).read_text(encoding="utf-8"))
    board["panels"][1]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    board["panels"][2]["gridPos"] = dict(board["panels"][1]["gridPos"])
    assert len(dashboard_problems(board, slug)) == 2
