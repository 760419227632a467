"""Level 2 of the test ladder: every combination of answers renders clean.

All 864 combinations of the choice/bool questions (python_version included, no cycling), split into
shards so pytest-xdist spreads them over the cores. Each variant: no Jinja residue, no empty file, every
YAML/TOML/JSON file parses, `ruff check` and `ruff format --check` pass, and the feature -> files table
(tests/conditional_files.toml) holds in both directions.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from rendering import COMPILE_REUSES, copy_template, fast_copier, record, render
from static_checks import (
    JINJA_RESIDUE,
    FileChecker,
    file_problems,
    project_files,
    ruff_problems,
    unconditional_drift,
)
from variants import ALL_VARIANTS, DEFAULT_VARIANT, OPTIONS, PAIRWISE_VARIANTS, UNUSUAL_ANSWERS, variant_id

SHARDS = 12


def check_variants(variants: list[dict[str, object]]) -> list[str]:
    checker = FileChecker()
    problems: list[str] = []
    projects = []
    for answers in variants:
        project = render(answers)
        projects.append(project)
        name = variant_id({**DEFAULT_VARIANT, **answers})
        problems.extend(f"[{name}] {problem}" for problem in file_problems(project, answers, checker))
    problems.extend(ruff_problems(projects))
    return problems


@pytest.mark.matrix
@pytest.mark.parametrize("shard", range(SHARDS), ids=lambda shard: f"shard{shard + 1}of{SHARDS}")
def test_every_variant_renders_clean(shard: int) -> None:
    variants = ALL_VARIANTS[shard::SHARDS]
    problems = check_variants(variants)
    assert not problems, "\n".join(problems)
    for answers in variants:
        record("variants_rendered", variant_id(answers))


@pytest.mark.fast
def test_default_and_unusual_answers_render_clean() -> None:
    problems = check_variants([DEFAULT_VARIANT, {**DEFAULT_VARIANT, **UNUSUAL_ANSWERS}])
    assert not problems, "\n".join(problems)


@pytest.mark.matrix
def test_only_declared_files_depend_on_answers() -> None:
    """A file that comes and goes with the answers must be declared in conditional_files.toml."""
    file_sets = []
    for answers in ALL_VARIANTS:
        project = render(answers)
        file_sets.append({path.relative_to(project).as_posix() for path in project_files(project)})
    drift = unconditional_drift(file_sets, package=str(DEFAULT_VARIANT.get("package_name", "acme_service")))
    assert not drift, f"files that vary with the answers but are not in conditional_files.toml: {drift}"


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``root``: its mode, and a file's bytes."""
    entries = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory, name)
            content = b"" if path.is_dir() else path.read_bytes()
            entries[path.relative_to(root).as_posix()] = (path.lstat().st_mode, content)
    return entries


@pytest.mark.fast
@pytest.mark.parametrize(
    "answers",
    [DEFAULT_VARIANT, {**ALL_VARIANTS[-1], **UNUSUAL_ANSWERS}],
    ids=["default", "last-variant-unusual-answers"],
)
def test_harness_renders_equal_plain_copier(answers: dict[str, Any], tmp_path: Path) -> None:
    """What level 2 checks is what copier renders: the harness's shortcuts (``fast_copier``) change no
    byte, mode or path, also when the compiled templates come from an earlier render."""
    plain = tree(copy_template(answers, tmp_path / "plain"))
    with fast_copier():
        copy_template(
            DEFAULT_VARIANT if answers is not DEFAULT_VARIANT else ALL_VARIANTS[-1], tmp_path / "warm-up"
        )
        reused = COMPILE_REUSES["reused"]
        fast = tree(copy_template(answers, tmp_path / "fast"))
    assert COMPILE_REUSES["reused"] - reused > 100, "the render did not reuse the compiled templates"
    assert fast.keys() == plain.keys(), f"paths differ: {sorted(fast.keys() ^ plain.keys())}"
    differing = sorted(path for path in plain if fast[path] != plain[path])
    assert not differing, f"the harness renders these differently from copier: {differing}"


@pytest.mark.fast
def test_pairwise_variants_cover_every_pair_of_answers() -> None:
    """Levels 4 and 5 test only PAIRWISE_VARIANTS: they must hold every pair of answers of any two
    questions, and be distinct."""
    missing = [
        f"{first}={first_value} with {second}={second_value}"
        for first, second in itertools.combinations(OPTIONS, 2)
        for first_value in OPTIONS[first]
        for second_value in OPTIONS[second]
        if not any(
            variant[first] == first_value and variant[second] == second_value for variant in PAIRWISE_VARIANTS
        )
    ]
    assert not missing, f"pairs no pairwise variant holds: {missing}"
    ids = [variant_id(variant) for variant in PAIRWISE_VARIANTS]
    assert len(set(ids)) == len(ids), "a pairwise variant is listed twice"
    assert all(list(variant) == list(OPTIONS) for variant in PAIRWISE_VARIANTS)


@pytest.mark.fast
def test_residue_check_catches_jinja() -> None:
    """The residue pattern is what level 2 relies on: prove it flags Jinja and spares Actions syntax."""
    assert JINJA_RESIDUE.search("name = {{ project_name }}")
    assert JINJA_RESIDUE.search("{% if redis %}")
    assert JINJA_RESIDUE.search("{{cookiecutter.project_slug}}")
    assert JINJA_RESIDUE.search("name: {{package_name}}")
    assert JINJA_RESIDUE.search("{# a template comment #}")
    assert not JINJA_RESIDUE.search("run: echo ${{ github.sha }}")
    assert not JINJA_RESIDUE.search("tags: type=semver,pattern={{version}}")
    assert not JINJA_RESIDUE.search('body = {"status": "ok"}')
