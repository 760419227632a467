"""The lockfiles generated projects ship: one per dependency set, each exactly what uv writes.

``make lock`` (scripts/lock.py) resolves every dependency set and stores it in ``locks/``;
``template/uv.lock.jinja`` puts a project's lock back together. These tests prove the two agree, that uv
finds every shipped lock consistent with its ``pyproject.toml`` (offline, from the lock alone), and that
the dependencies capped to the tested minor release are capped honestly.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from rendering import record, render
from variants import ALL_VARIANTS, COPIER_YML, DEFAULT_VARIANT, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import lock  # scripts/ is not a package: imported from its folder

UV = Path(sys.executable).with_name("uv")
LOCKS = REPO_ROOT / "locks"
# Dependencies whose non-public details the service relies on: each is capped below the next minor
# release after the one the template tested, and must stay so.
CAPPED = ("fastapi", "starlette", "uvicorn")


def uv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(UV), *args], cwd=project, capture_output=True, text=True, check=False)


def one_variant_per_set() -> dict[str, dict[str, object]]:
    variants: dict[str, dict[str, object]] = {}
    for answers in ALL_VARIANTS:
        variants.setdefault(lock.set_name(answers), answers)
    return variants


@pytest.mark.fast
def test_copier_names_the_lock_set_as_the_lock_script_does() -> None:
    expression = jinja2.Environment(autoescape=False).from_string(COPIER_YML["lock_set"]["default"])
    for answers in ALL_VARIANTS:
        assert expression.render(**answers) == lock.set_name(answers), answers
    assert len(lock.LOCK_SETS) == 24
    assert set(lock.SET_QUESTIONS) <= set(DEFAULT_VARIANT)


@pytest.mark.fast
def test_locks_folder_holds_every_set_and_nothing_stale() -> None:
    sets = {path.stem for path in (LOCKS / "sets").glob("*.jinja")}
    assert sets == set(lock.LOCK_SETS), "run make lock: locks/sets/ does not match the dependency sets"
    used = set()
    for name in sets:
        text = (LOCKS / "sets" / f"{name}.jinja").read_text(encoding="utf-8")
        used.update(key for _, key in lock.re.findall(r'\("([^"]+)", "([^"]+)"\)', text))
    stored = {path.stem for path in (LOCKS / "packages").glob("*.toml")}
    assert used <= stored, f"package entries missing from locks/packages/: {sorted(used - stored)}"
    assert stored <= used, f"package entries no set uses (run make lock): {sorted(stored - used)}"


@pytest.mark.fast
@pytest.mark.parametrize(
    "project_name",
    ["Acme Service", "Aaa", "Zz Top", "Fastapi Tools", "Uvicorn Tools"],
    ids=["default", "sorts-first", "sorts-last", "beside-fastapi", "beside-uvicorn"],
)
def test_shipped_lock_is_what_uv_writes(project_name: str) -> None:
    """Wherever uv sorts the project's own entry, the rendered lock stays byte for byte as uv keeps it."""
    project = render({**DEFAULT_VARIANT, "redis": True, "project_name": project_name})
    shipped = (project / "uv.lock").read_text(encoding="utf-8")
    result = uv(project, "lock", "--offline", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "No lockfile changes detected" in result.stderr, (
        f"uv would change the shipped lock:\n{result.stderr}"
    )
    slug = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    entries = [package["name"] for package in tomllib.loads(shipped)["package"]]
    assert slug in entries
    assert entries == sorted(entries), "uv sorts [[package]] entries by name"


@pytest.mark.fast
def test_lock_script_reads_back_what_the_template_renders() -> None:
    """scripts/lock.py seeds a new resolution with the shipped locks: its reader must match the template."""
    name = "postgres-redis-sentry-otel"
    project = render({**DEFAULT_VARIANT, **lock.LOCK_SETS[name], "project_name": "Rampart Lock"})
    assert lock.stored_lock(name) == (project / "uv.lock").read_text(encoding="utf-8")


@pytest.mark.fast
def test_capped_dependencies_admit_the_tested_version_and_no_newer_minor() -> None:
    for name, answers in one_variant_per_set().items():
        project = render(answers)
        requirements = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        specifiers = {
            parsed.name: parsed.specifier for parsed in map(Requirement, requirements["dependencies"])
        }
        locked = {
            package["name"]: Version(package["version"])
            for package in tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))["package"]
        }
        for package in CAPPED:
            assert package in specifiers, f"[{name}] {package} must be a direct, capped dependency"
            tested = locked[package]
            next_minor = Version(f"{tested.major}.{tested.minor + 1}")
            assert tested in specifiers[package], (
                f"[{name}] tested {package} {tested} outside {specifiers[package]}"
            )
            assert next_minor not in specifiers[package], (
                f"[{name}] {package} {specifiers[package]} admits {next_minor}, past the tested {tested}"
            )


@pytest.mark.matrix
def test_every_variants_lock_is_consistent_with_its_pyproject() -> None:
    """All 864 renders collapse to one (pyproject.toml, uv.lock) pair per dependency set; uv checks each."""
    distinct: dict[str, Path] = {}
    for answers in ALL_VARIANTS:
        project = render(answers)
        digest = hashlib.sha256()
        for name in ("pyproject.toml", "uv.lock"):
            digest.update((project / name).read_bytes() + b"\0")
        distinct.setdefault(digest.hexdigest(), project)
    assert len(distinct) == len(lock.LOCK_SETS), "a dependency set's lock varies with answers it should not"
    problems = []
    for digest, project in distinct.items():
        result = uv(project, "lock", "--check", "--offline")
        if result.returncode != 0:
            problems.append(f"{project.name}: {result.stderr.strip()}")
        else:
            record("lock_sets", digest)
    assert not problems, "\n".join(problems)


@pytest.mark.fast
def test_the_union_resolution_asks_for_every_sets_dependencies() -> None:
    """One resolution feeds every set: a dependency left out of it would be resolved apart, on its own."""
    pyprojects = {
        name: (render(answers) / "pyproject.toml").read_text(encoding="utf-8")
        for name, answers in one_variant_per_set().items()
    }
    union = tomllib.loads(lock.union_pyproject(list(pyprojects.values())))
    for name, text in pyprojects.items():
        pyproject = tomllib.loads(text)
        assert set(pyproject["project"]["dependencies"]) <= set(union["project"]["dependencies"]), name
        for group, items in pyproject["dependency-groups"].items():
            assert set(items) <= set(union["dependency-groups"][group]), f"{name}: group {group}"
