"""The variant space, declared once: read from copier.yml, so a new choice or bool question joins the
matrix by itself.

- ``ALL_VARIANTS``: the full cartesian product of every choice/bool question (level 2 renders each).
- ``PAIRWISE_VARIANTS``: an all-pairs covering set (every pair of values of any two questions appears in
  at least one variant), for the expensive full smokes (level 4).
- ``CONDITIONAL_FILES``: which generated files belong to which feature (tests/conditional_files.toml).
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from allpairspy import AllPairs

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIER_YML: dict[str, Any] = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))

Answers = dict[str, Any]


def _options(questionnaire: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every asked question with a closed set of answers, default first."""
    options: dict[str, list[Any]] = {}
    for name, spec in questionnaire.items():
        if name.startswith("_") or not isinstance(spec, dict) or spec.get("when") is False:
            continue
        if "choices" in spec:
            values = list(spec["choices"])
        elif spec.get("type") == "bool":
            values = [False, True]
        else:
            continue
        default = spec.get("default")
        options[name] = [default, *(value for value in values if value != default)]
    return options


OPTIONS = _options(COPIER_YML)
DEFAULT_VARIANT: Answers = {name: values[0] for name, values in OPTIONS.items()}
ALL_VARIANTS: list[Answers] = [
    dict(zip(OPTIONS, combination, strict=True)) for combination in itertools.product(*OPTIONS.values())
]
# AllPairs is greedy: given the questions with the most answers first it finds 11 variants here, in
# copier.yml's order 14 (each one a full smoke and an update test, ~2 minutes of the ladder).
_BY_ANSWERS = sorted(OPTIONS, key=lambda name: -len(OPTIONS[name]))
PAIRWISE_VARIANTS: list[Answers] = [
    {name: dict(zip(_BY_ANSWERS, combination, strict=True))[name] for name in OPTIONS}
    for combination in AllPairs([OPTIONS[name] for name in _BY_ANSWERS])
]
# Answers with spaces, capitals, digits, a hyphen, non-ASCII letters and an apostrophe.
UNUSUAL_ANSWERS: Answers = {
    "project_name": "3D Print-Farm Service 2",
    "author_name": "Zoë O'Brien-Núñez",
    "author_email": "zoe.obrien@example.org",
    "description": "Schedules jobs for the print farm; it's hardened",
}

_SHORT = {False: "no", True: "yes"}


def variant_id(answers: Mapping[str, Any]) -> str:
    """A short, stable, filesystem-safe name: py312-sqlite-redis_no-kubernetes_yes-github-..."""
    parts = []
    for name in OPTIONS:
        value = answers[name]
        if isinstance(value, bool):
            parts.append(f"{name}_{_SHORT[value]}")
        elif name == "python_version":
            parts.append("py" + str(value).replace(".", ""))
        else:
            parts.append(str(value))
    return "-".join(parts)


def _load_conditional_files() -> list[tuple[str, dict[str, list[Any]]]]:
    table = tomllib.loads((Path(__file__).with_name("conditional_files.toml")).read_text(encoding="utf-8"))
    rules = []
    for entry in table["files"]:
        unknown = set(entry["when"]) - set(OPTIONS)
        if unknown:
            raise ValueError(f"conditional_files.toml: {entry['path']} names unknown questions {unknown}")
        rules.append((entry["path"], entry["when"]))
    return rules


CONDITIONAL_FILES = _load_conditional_files()


def expected_conditional_files(answers: Mapping[str, Any]) -> set[str]:
    """The conditional files that must exist for these answers (all others must not)."""
    return {
        path
        for path, when in CONDITIONAL_FILES
        if all(answers[question] in allowed for question, allowed in when.items())
    }
