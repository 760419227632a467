"""The generated service under test: rendered from the working tree, installed into the bench venv.

The bench venv holds scripts/bench/requirements.txt (the service's dependencies included), so the service,
the bare app and the library-assembled app run on the very same fastapi, starlette and uvicorn; the
service is installed on top with those pins as constraints (a new template dependency still resolves).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import copier
import yaml
from procs import say

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
UV = REPO_ROOT / ".venv" / "bin" / "uv"


def render(dest: Path, data: dict[str, Any] | None = None, source: Path = REPO_ROOT) -> dict[str, Any]:
    """Render the template (uncommitted edits included) into ``dest``; returns the answers."""
    shutil.rmtree(dest, ignore_errors=True)
    options: dict[str, Any] = {"vcs_ref": "HEAD"} if (source / ".git").exists() else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier warns that uncommitted template changes are included
        copier.run_copy(
            str(source), str(dest), data=data or {}, defaults=True, unsafe=True, quiet=True, **options
        )
    answers: dict[str, Any] = yaml.safe_load((dest / ".copier-answers.yml").read_text(encoding="utf-8"))
    return answers


def install(project: Path, bench_python: Path) -> None:
    """Install the rendered project (editable) into the bench venv, pinned by requirements.txt."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    command = [
        str(UV),
        "pip",
        "install",
        "--quiet",
        "--python",
        str(bench_python),
        "--constraint",
        str(REQUIREMENTS),
        "--editable",
        str(project),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"installing {project} into the bench venv failed:\n{result.stderr[-3000:]}")
    # Compiled like the image's install (UV_COMPILE_BYTECODE): cold starts must not include compiling the
    # service's own modules where PYTHONDONTWRITEBYTECODE keeps Python from caching them.
    compile_source(project, bench_python)


def compile_source(project: Path, bench_python: Path) -> None:
    command = [str(bench_python), "-m", "compileall", "-q", str(project / "src")]
    subprocess.run(command, check=True, capture_output=True)


def template_at(ref: str, dest: Path) -> Path:
    """A plain copy of the template as committed at ``ref`` (``git archive``: no uncommitted edits), with
    the shipped lock data where ``ref`` has it (releases before v0.8.0 do not)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    has_locks = subprocess.run(["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{ref}:locks"], check=False)
    inputs = ["copier.yml", "template", *(["locks"] if has_locks.returncode == 0 else [])]
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, *inputs],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {ref} failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def prepare(build: Path, bench_python: Path, ref: str | None) -> tuple[dict[str, Any], Path, dict[str, Path]]:
    """The default service (installed) and two variants imported from their src/ when needed: with Redis
    (the Redis rate-limit row) and without a database (what the database costs at start-up)."""
    source = REPO_ROOT if ref is None else template_at(ref, build / "template-at-ref")
    say(f"rendering the default service and two variants from {ref or 'the working tree'}")
    default = build / "service"
    answers = render(default, source=source)
    variants = {"redis": build / "service-redis", "no_database": build / "service-no-database"}
    render(variants["redis"], {"redis": True}, source=source)
    render(variants["no_database"], {"database": "none"}, source=source)
    say("installing the default service into the bench venv (uv, pinned by scripts/bench/requirements.txt)")
    install(default, bench_python)
    compile_source(variants["no_database"], bench_python)  # its cold starts are measured too
    return answers, default, variants
