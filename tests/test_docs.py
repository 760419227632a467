"""The template's documentation site (docs/, mkdocs.yml) builds strictly and keeps up with the template.

`mkdocs build --strict` fails on a broken link or anchor, a page missing from the nav or a nav entry without
a page. The other tests read the template itself: every question of copier.yml has its section in
docs/questions.md (with its choices and default), every environment variable the service's settings read
is in the settings reference, every metric it exports is on the metrics page, and every generated test file
the module pages name exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from variants import COPIER_YML, REPO_ROOT

pytestmark = pytest.mark.fast

DOCS = REPO_ROOT / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"
PACKAGE = REPO_ROOT / "template" / "src" / "{{package_name}}"
SETTINGS_TEMPLATE = PACKAGE / "settings.py.jinja"
ENV_EXAMPLE_TEMPLATE = REPO_ROOT / "template" / ".env.example.jinja"
METRICS_MODULE = PACKAGE / "metrics.py"
GENERATED_TESTS = REPO_ROOT / "template" / "tests"
ENV_PREFIX = "APP_"


def questions() -> dict[str, dict[str, Any]]:
    """The questions copier asks (as tests/variants.py reads them): no `_` settings, no computed values."""
    return {
        name: spec
        for name, spec in COPIER_YML.items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
    }


def section(markdown: str, heading: str) -> str:
    """The text under a `## heading` up to the next heading of the same level (empty when missing)."""
    match = re.search(
        rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL
    )
    return match[1] if match else ""


def settings_variables() -> list[str]:
    """Every environment variable `Settings` reads, in any variant: `APP_<FIELD>` or the field's alias.

    Read from the template's source, so fields behind `{% if %}` (database, Redis, Sentry...) count too.
    """
    source = SETTINGS_TEMPLATE.read_text(encoding="utf-8")
    body = source[source.index("class Settings(") :]
    body = body[: body.index("    @property")]
    fields = list(re.finditer(r"^    ([a-z_][a-z0-9_]*): ", body, re.MULTILINE))
    assert fields, f"no settings fields found in {SETTINGS_TEMPLATE}"
    names = []
    for index, field in enumerate(fields):
        end = fields[index + 1].start() if index + 1 < len(fields) else len(body)
        alias = re.search(r'validation_alias="([A-Z][A-Z0-9_]*)"', body[field.start() : end])
        names.append(alias[1] if alias else f"{ENV_PREFIX}{field[1]}".upper())
    return names


def env_example_variables() -> set[str]:
    text = ENV_EXAMPLE_TEMPLATE.read_text(encoding="utf-8")
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def exported_metrics() -> list[str]:
    source = METRICS_MODULE.read_text(encoding="utf-8")
    names = re.findall(r'\b(?:Counter|Gauge|Histogram|Summary)\(\s*"([a-z_:][a-z0-9_:]*)"', source)
    assert names, f"no metric definitions found in {METRICS_MODULE}"
    return names


def generated_test_files() -> set[str]:
    """`test_*.py` names the template generates in some variant (conditional names included)."""
    return {
        match[0]
        for path in GENERATED_TESTS.iterdir()
        for match in re.finditer(r"test_[a-z0-9_]+\.py", path.name)
    }


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    assert MKDOCS.exists(), f"mkdocs is missing from {MKDOCS.parent}: run `make venv`"
    site = tmp_path / "site"
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about its successor
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    for page in ("index.html", "questions/index.html", "modules/index.html", "updating/index.html"):
        assert (site / page).is_file(), f"the site has no {page}"


def test_every_question_is_documented_with_its_choices_and_default() -> None:
    text = read(DOCS / "questions.md")
    problems = []
    for name, spec in questions().items():
        body = section(text, f"`{name}`")
        if not body:
            problems.append(f"docs/questions.md has no '## `{name}`' section")
            continue
        if f"`{spec.get('type', 'str')}`" not in body:
            problems.append(f"{name}: the section does not give its type `{spec.get('type', 'str')}`")
        for choice in spec.get("choices", []):
            if f"`{choice}`" not in body:
                problems.append(f"{name}: choice `{choice}` is not in its section")
        default = spec.get("default")
        if isinstance(default, bool):
            default = str(default).lower()
        if isinstance(default, str) and "{" in default:
            continue  # a derived default: the section describes how it is derived
        if f"`{default}`" not in body:
            problems.append(f"{name}: the default `{default}` is not in its section")
    assert not problems, "\n".join(problems)


def test_questions_table_lists_every_question() -> None:
    text = read(DOCS / "questions.md")
    missing = [name for name in questions() if not re.search(rf"^\| \[`{name}`\]", text, re.MULTILINE)]
    assert not missing, f"the table at the top of docs/questions.md misses {missing}"


def test_every_setting_is_in_the_settings_reference() -> None:
    reference = read(DOCS / "settings.md")
    variables = settings_variables() + sorted(env_example_variables())
    missing = sorted({name for name in variables if f"`{name}`" not in reference})
    assert not missing, f"document these environment variables in docs/settings.md: {missing}"


def test_every_setting_is_named_on_a_module_page() -> None:
    pages = "\n".join(read(path) for path in sorted((DOCS / "modules").glob("*.md")))
    missing = [name for name in settings_variables() if f"`{name}`" not in pages]
    assert not missing, f"no page under docs/modules/ names {missing}"


def test_every_exported_metric_is_on_the_metrics_page() -> None:
    page = read(DOCS / "modules" / "metrics.md")
    missing = [name for name in exported_metrics() if f"`{name}`" not in page]
    assert not missing, f"docs/modules/metrics.md does not list {missing}"


def test_module_pages_name_only_generated_test_files() -> None:
    existing = generated_test_files()
    problems = []
    for path in sorted((DOCS / "modules").glob("*.md")):
        for name in sorted(set(re.findall(r"tests/(test_[a-z0-9_]+\.py)", read(path)))):
            if name not in existing:
                problems.append(f"{path.relative_to(REPO_ROOT)} names tests/{name}, which the template lacks")
    assert not problems, "\n".join(problems)


def test_readme_links_the_docs_site() -> None:
    assert "make docs" in read(REPO_ROOT / "README.md"), "README.md does not say how to build the docs"
