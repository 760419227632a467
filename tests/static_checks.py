"""Static checks of rendered projects (level 2): run on files deduplicated by content, so the 864-variant
matrix costs about as much as the handful of distinct files it produces."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from variants import CONDITIONAL_FILES, COPIER_YML, expected_conditional_files

# Residue is any Jinja statement or comment, or an expression naming one of OUR variables. Other
# `{{ ... }}` are legitimate content of generated files: GitHub Actions `${{ github.sha }}`, image tag
# patterns `{{version}}`, Grafana legends, Prometheus alert templates.
_OUR_NAMES = "|".join(re.escape(name) for name in COPIER_YML if not name.startswith("_"))
JINJA_RESIDUE = re.compile(rf"\{{%|%\}}|\{{#|_copier_conf|cookiecutter\.|\{{\{{-?\s*({_OUR_NAMES}|_copier)\b")
SKIPPED_DIRS = {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
RUFF = Path(sys.executable).with_name("ruff")


def project_files(project: Path) -> list[Path]:
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and not SKIPPED_DIRS.intersection(path.relative_to(project).parts)
    )


def _parse_problem(path: Path, text: str) -> str | None:
    try:
        if path.suffix in {".yml", ".yaml"}:
            list(yaml.safe_load_all(text))
        elif path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix == ".json":
            json.loads(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        return f"does not parse: {error}"
    return None


class FileChecker:
    """Checks each distinct file content once, however many variants produced it."""

    def __init__(self) -> None:
        self._verdicts: dict[tuple[str, str], list[str]] = {}

    def check(self, path: Path) -> list[str]:
        data = path.read_bytes()
        key = (path.suffix, hashlib.sha256(data).hexdigest())
        if key not in self._verdicts:
            self._verdicts[key] = self._problems(path, data)
        return self._verdicts[key]

    @staticmethod
    def _problems(path: Path, data: bytes) -> list[str]:
        if not data.strip():
            return ["is empty"]
        if path.name.endswith(".jinja"):
            return ["kept its .jinja suffix"]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return ["is not UTF-8"]
        problems = []
        for number, line in enumerate(text.splitlines(), start=1):
            if JINJA_RESIDUE.search(line):
                problems.append(f"line {number} has Jinja residue: {line.strip()[:80]}")
        parse_problem = _parse_problem(path, text)
        if parse_problem:
            problems.append(parse_problem)
        return problems


def file_problems(project: Path, answers: Mapping[str, Any], checker: FileChecker) -> list[str]:
    """Residue, empty files, unparsable YAML/TOML/JSON, and the feature -> files table, for one project."""
    problems = []
    files = project_files(project)
    relative = {path.relative_to(project).as_posix() for path in files}
    for path in files:
        problems.extend(f"{path.relative_to(project)}: {p}" for p in checker.check(path))
    package = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))["package_name"]
    expected = {path.format(package_name=package) for path in expected_conditional_files(answers)}
    for template_path, _ in CONDITIONAL_FILES:
        conditional = template_path.format(package_name=package)
        if conditional in expected and conditional not in relative:
            problems.append(f"{conditional}: missing, though its feature is on")
        if conditional not in expected and conditional in relative:
            problems.append(f"{conditional}: present, though its feature is off")
    return problems


def unconditional_drift(file_sets: Iterable[set[str]], package: str) -> set[str]:
    """Files present in some variants but not all, and not declared in conditional_files.toml."""
    sets = list(file_sets)
    if not sets:
        return set()
    varying = set.union(*sets) - set.intersection(*sets)
    return varying - {path.format(package_name=package) for path, _ in CONDITIONAL_FILES}


def ruff_problems(projects: list[Path]) -> list[str]:
    """`ruff check` and `ruff format --check` over many projects at once (each uses its own config)."""
    problems = []
    for command in (["check", "--no-cache", "--quiet"], ["format", "--check", "--no-cache", "--quiet"]):
        result = subprocess.run(
            [str(RUFF), *command, *map(str, projects)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            problems.append(f"ruff {command[0]} failed:\n{result.stdout}{result.stderr}"[:6000])
    return problems
