"""The alert rules and the Grafana dashboard (deploy/monitoring/) agree with what the service exports:
a metric renamed in metrics.py but not in a PromQL expression would blank a panel or disarm an alert
without anyone noticing.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MONITORING = PROJECT_ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING / "alerts.yml"
DASHBOARD_FILE = MONITORING / "dashboard.json"
SERVICE = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus writes itself for every scrape target; no application exports them.
PROMETHEUS_SERIES = {"up"}
# Sample names each metric type adds to its family name in the text format.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: what is left once strings, label matchers and lists, range
    selectors, Grafana variables, function calls, keywords and numbers are set aside."""
    for pattern in (_STRING, _GRAFANA_VARIABLE, _LABEL_MATCHERS, _RANGE, _LABEL_LIST):
        expr = pattern.sub(" ", expr)
    return {match[1] for match in _NAME.finditer(expr) if not match[2] and match[1].lower() not in _KEYWORDS}


def unknown_metrics(expr: str, exported: set[str]) -> set[str]:
    unknown = metric_names(expr) - exported - PROMETHEUS_SERIES
    if sys.platform != "linux":
        # prometheus-client reads process_* from /proc: elsewhere they are missing, not misnamed.
        unknown = {name for name in unknown if not name.startswith("process_")}
    return unknown


def alerting_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in panels(dashboard()["panels"]) for target in panel.get("targets", [])]


@pytest.fixture
async def exported(client: AsyncClient) -> set[str]:
    """Every series name /metrics can carry, as the running app reports it."""
    await client.get("/health/live")
    await client.get("/no-such-route")
    response = await client.get("/metrics")
    assert response.status_code == 200
    names: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{job="x", route!~"/health.*"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum(rate(b_bucket[$__rate_interval])) by (le))", {"b_bucket"}),
        (
            'c_total{outcome="allowed"} / ignoring(outcome) d_total > 1e3 and on (job) up == 0',
            {"c_total", "d_total", "up"},
        ),
        ("max_over_time(e[5m] offset 1h) > bool 2", {"e"}),
        ('f{a="}"} unless g{instance=~"$instance"}', {"f", "g"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_alert_is_complete() -> None:
    rules = alerting_rules()
    assert rules, f"no alerting rules in {RULES_FILE}"
    for rule in rules:
        name = rule["alert"]
        assert rule.get("expr"), name
        assert "for" in rule, f"{name}: no `for` (say 0m to fire at once)"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), f"{name}: no {key} annotation"
        assert "RUNBOOK.md#" in annotations["runbook_url"], name


def test_every_runbook_link_leads_to_a_runbook_section() -> None:
    runbook = (PROJECT_ROOT / "RUNBOOK.md").read_text(encoding="utf-8")
    # Anchors as GitHub and GitLab make them from headings: lower case, punctuation dropped, spaces to "-".
    anchors = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    for rule in alerting_rules():
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor in anchors, f"{rule['alert']}: RUNBOOK.md has no section #{anchor}"


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names))


def test_every_alert_selects_this_service() -> None:
    for rule in alerting_rules():
        assert f'job="{SERVICE}"' in rule["expr"], rule["alert"]


async def test_alerts_use_only_exported_metrics(exported: set[str]) -> None:
    for rule in alerting_rules():
        unknown = unknown_metrics(rule["expr"], exported)
        assert not unknown, f"{rule['alert']} uses metrics the service does not export: {unknown}"


async def test_dashboard_uses_only_exported_metrics(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert exprs, f"no queries in {DASHBOARD_FILE}"
    for expr in exprs:
        unknown = unknown_metrics(expr, exported)
        assert not unknown, f"dashboard query uses metrics the service does not export: {unknown}\n{expr}"


async def test_readiness_probes_are_counted_under_the_route_the_alert_selects(client: AsyncClient) -> None:
    [rule] = [rule for rule in alerting_rules() if rule["alert"] == "ReadinessFailing"]
    assert 'route="/health/ready"' in rule["expr"]
    await client.get("/health/ready")
    response = await client.get("/metrics")
    routes = {
        sample.labels.get("route")
        for family in text_string_to_metric_families(response.text)
        if family.name == "http_requests"
        for sample in family.samples
    }
    assert "/health/ready" in routes


def test_dashboard_queries_select_the_job_variable() -> None:
    for expr in dashboard_exprs():
        assert 'job="$job"' in expr, expr
    [job] = [variable for variable in dashboard()["templating"]["list"] if variable["name"] == "job"]
    assert job["query"] == job["current"]["value"] == SERVICE


def test_dashboard_data_source_is_a_variable() -> None:
    board = dashboard()
    [variable] = [item for item in board["templating"]["list"] if item["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    reference = "${" + variable["name"] + "}"
    sources = [panel["datasource"] for panel in panels(board["panels"]) if "datasource" in panel]
    sources += [
        target["datasource"]
        for panel in panels(board["panels"])
        for target in panel.get("targets", [])
        if "datasource" in target
    ]
    assert sources
    assert all(source["uid"] == reference for source in sources), "a panel names a fixed data source"


def test_dashboard_panels_have_unique_ids() -> None:
    ids = [panel["id"] for panel in panels(dashboard()["panels"])]
    assert len(ids) == len(set(ids))
