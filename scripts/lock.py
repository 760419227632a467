"""Regenerate the lockfiles every generated project ships (``make lock``; ``make lock UPGRADE=1``).

A project's dependencies depend on four answers only (database, redis, sentry, opentelemetry), so there
are ``len(LOCK_SETS)`` distinct dependency sets. Each set is resolved by uv itself, from a rendered
``pyproject.toml``, and stored in ``locks/``:

- ``locks/packages/<name>-<version>.toml``: one ``[[package]]`` entry, shared by every set that has it;
- ``locks/sets/<set>.jinja``: the lock's header, the set's package files in uv's order, and the project's
  own entry with its name left to the template.

``template/uv.lock.jinja`` puts them back together, placing the project's entry where uv sorts it, so a
generated ``uv.lock`` is byte for byte what ``uv lock`` writes for that project (the render matrix proves
it). All sets are cut from one resolution of their union, so a package has the same version in every
generated project of a template release. Without ``--upgrade`` the current versions are kept wherever the
ranges still allow them; with it, every package moves to its newest allowed version. The versions that
changed are printed for the CHANGELOG.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import warnings
from collections.abc import Iterable
from pathlib import Path

import copier

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCKS = REPO_ROOT / "locks"
PLACEHOLDER_SLUG = "rampart-lock"
PLACEHOLDER_NAME_LINE = f'name = "{PLACEHOLDER_SLUG}"'
PROJECT_NAME_LINE = 'name = "{{ project_slug }}"'
# The answers that change a generated project's dependencies; copier.yml's computed `lock_set` names the
# same combination.
SET_QUESTIONS = {
    "database": ["sqlite", "postgres", "none"],
    "redis": [False, True],
    "sentry": [False, True],
    "opentelemetry": [False, True],
}
PACKAGE_HEADER = "[[package]]\n"
JINJA_MARKUP = re.compile(r"\{[{%#]|[}%#]\}")


def set_name(answers: dict[str, object]) -> str:
    """``sqlite``, ``postgres-redis-sentry-otel``...: must equal copier.yml's ``lock_set``."""
    flags = [("redis", "redis"), ("sentry", "sentry"), ("opentelemetry", "otel")]
    return "-".join([str(answers["database"]), *(short for key, short in flags if answers[key])])


LOCK_SETS = {
    set_name(answers): answers
    for answers in (
        dict(zip(SET_QUESTIONS, values, strict=True)) for values in itertools.product(*SET_QUESTIONS.values())
    )
}


def split_lock(text: str) -> tuple[str, list[str]]:
    """The header (with its blank line) and each ``[[package]]`` entry's body without trailing newlines."""
    header, *bodies = re.split(r"(?m)^\[\[package\]\]\n", text)
    if not bodies or not header.endswith("\n\n"):
        raise SystemExit("uv.lock does not look like uv's format: no [[package]] entries after a header")
    return header, [body.rstrip("\n") for body in bodies]


def join_lock(header: str, bodies: Iterable[str]) -> str:
    return header + "\n".join(f"{PACKAGE_HEADER}{body}\n" for body in bodies)


def entry_name(body: str) -> tuple[str, str]:
    entry = tomllib.loads(body)
    return entry["name"], entry.get("version", "")


def uv(*args: str, cwd: Path) -> None:
    result = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "uv"), *args], cwd=cwd, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"uv {' '.join(args)} failed in {cwd} (exit {result.returncode})")


def render_pyproject(source: Path, answers: dict[str, object], dest: Path) -> Path:
    """The generated ``pyproject.toml`` of a project with these answers (nothing else is rendered)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(source),
            str(dest),
            data={"project_name": "Rampart Lock", **answers},
            defaults=True,
            unsafe=True,
            quiet=True,
            exclude=["*", "!pyproject.toml"],
            skip_tasks=True,
        )
    return dest / "pyproject.toml"


def array_items(pyproject: str, opening: str) -> list[str]:
    """The quoted items of the TOML array that starts with the line ``opening`` (one item per line)."""
    start = pyproject.index(opening + "\n") + len(opening) + 1
    body = pyproject[start : pyproject.index("\n]", start)]
    lines = (line.strip() for line in body.splitlines())
    return [line.rstrip(",") for line in lines if line and not line.startswith("#")]


def union_pyproject(pyprojects: list[str]) -> str:
    """The widest set's pyproject with every set's dependencies: one resolution covers them all."""
    widest = max(pyprojects, key=len)
    for opening in ("dependencies = [", "dev = ["):
        items = sorted({item for text in pyprojects for item in array_items(text, opening)})
        start = widest.index(opening + "\n")
        end = widest.index("\n]", start)
        widest = (
            widest[:start] + opening + "\n" + "".join(f"  {item},\n" for item in items) + widest[end + 1 :]
        )
    return widest


def stored_lock(name: str) -> str | None:
    """The lock set ``name`` ships today, put back together for the placeholder project (None if new)."""
    path = LOCKS / "sets" / f"{name}.jinja"
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    header = re.search(r"\{% set header %\}(.*?)\{% endset %\}", text, re.DOTALL)
    project = re.search(r"\{% set project %\}(.*?)\{% endset %\}", text, re.DOTALL)
    keys = re.search(r"\{% set packages = \[(.*?)\] %\}", text, re.DOTALL)
    if not (header and project and keys):
        raise SystemExit(f"{path} is not in the format this script writes; run make lock UPGRADE=1")
    bodies = [
        (LOCKS / "packages" / f"{key}.toml")
        .read_text(encoding="utf-8")
        .removeprefix(PACKAGE_HEADER)
        .rstrip("\n")
        for _, key in re.findall(r'\("([^"]+)", "([^"]+)"\)', keys.group(1))
    ]
    bodies.append(
        project.group(1)
        .removeprefix(PACKAGE_HEADER)
        .replace(PROJECT_NAME_LINE, PLACEHOLDER_NAME_LINE)
        .rstrip("\n")
    )
    bodies.sort(key=entry_name)
    return join_lock(header.group(1), bodies)


def versions(lock: str) -> dict[str, str]:
    """Package name -> its locked version(s) (a fork on Python's version can lock two)."""
    found: dict[str, list[str]] = {}
    for name, version in map(entry_name, split_lock(lock)[1]):
        if name != PLACEHOLDER_SLUG:
            found.setdefault(name, []).append(version)
    return {name: ", ".join(sorted(versions)) for name, versions in found.items()}


def write_set(name: str, lock: str, packages: dict[str, str]) -> None:
    header, bodies = split_lock(lock)
    keys: list[tuple[str, str]] = []
    project = None
    for body in bodies:
        package, version = entry_name(body)
        if package == PLACEHOLDER_SLUG:
            project = PACKAGE_HEADER + body.replace(PLACEHOLDER_NAME_LINE, PROJECT_NAME_LINE, 1) + "\n"
            continue
        key = f"{package}-{version}"
        if packages.setdefault(key, body) != body:
            raise SystemExit(f"{key} is locked differently in {name} than in another set: store them apart")
        keys.append((package, key))
    if project is None:
        raise SystemExit(f"the {name} lock has no entry for the project itself")
    for text in (header, *bodies):
        if JINJA_MARKUP.search(text.replace(PLACEHOLDER_SLUG, "")):
            raise SystemExit(f"the {name} lock contains Jinja markup; uv.lock.jinja cannot include it as is")
    listed = ",\n".join(f'    ("{package}", "{key}")' for package, key in keys)
    (LOCKS / "sets" / f"{name}.jinja").write_text(
        f"{{#- written by `make lock` (scripts/lock.py): do not edit -#}}\n"
        f"{{% set header %}}{header}{{% endset %}}\n"
        f"{{% set packages = [\n{listed},\n] %}}\n"
        f"{{% set project %}}{project}{{% endset %}}\n",
        encoding="utf-8",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upgrade", action="store_true", help="move every package to its newest allowed version"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rampart-lock-") as scratch_name:
        scratch = Path(scratch_name)
        source = scratch / "template-source"
        source.mkdir()
        shutil.copy2(REPO_ROOT / "copier.yml", source / "copier.yml")
        shutil.copytree(REPO_ROOT / "template", source / "template")

        before: dict[str, str] = {}
        pyprojects: dict[str, str] = {}
        for name, answers in LOCK_SETS.items():
            pyprojects[name] = render_pyproject(source, answers, scratch / name).read_text(encoding="utf-8")
            if (old := stored_lock(name)) is not None:
                before.update(versions(old))
                (scratch / name / "uv.lock").write_text(old, encoding="utf-8")

        union = scratch / "union"
        union.mkdir()
        (union / "pyproject.toml").write_text(union_pyproject(list(pyprojects.values())), encoding="utf-8")
        widest = max(pyprojects, key=lambda name: len(pyprojects[name]))
        if (scratch / widest / "uv.lock").exists():  # today's versions are the union's preferences
            shutil.copy2(scratch / widest / "uv.lock", union / "uv.lock")
        print(f"==> resolving the union of {len(LOCK_SETS)} dependency sets", file=sys.stderr)
        uv("lock", "--quiet", *(["--upgrade"] if args.upgrade else []), cwd=union)

        packages: dict[str, str] = {}
        locks: dict[str, str] = {}
        for name in LOCK_SETS:
            # uv keeps what an existing lock pins and drops what the set does not need.
            shutil.copy2(union / "uv.lock", scratch / name / "uv.lock")
            uv("lock", "--quiet", cwd=scratch / name)
            uv("lock", "--quiet", "--check", "--offline", cwd=scratch / name)
            locks[name] = (scratch / name / "uv.lock").read_text(encoding="utf-8")

    shutil.rmtree(LOCKS / "sets", ignore_errors=True)
    shutil.rmtree(LOCKS / "packages", ignore_errors=True)
    (LOCKS / "sets").mkdir(parents=True)
    (LOCKS / "packages").mkdir(parents=True)
    after: dict[str, str] = {}
    for name, lock in locks.items():
        write_set(name, lock, packages)
        after.update(versions(lock))
    for key, body in packages.items():
        (LOCKS / "packages" / f"{key}.toml").write_text(f"{PACKAGE_HEADER}{body}\n", encoding="utf-8")

    changes = [
        f"{package}: {before.get(package, 'new')} -> {after.get(package, 'removed')}"
        for package in sorted(before.keys() | after.keys())
        if before.get(package) != after.get(package)
    ]
    print(f"{len(locks)} lock sets, {len(packages)} package entries in {LOCKS.relative_to(REPO_ROOT)}/")
    print("dependency changes in generated projects (for the CHANGELOG):")
    print("\n".join(f"- {change}" for change in changes) or "- none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
