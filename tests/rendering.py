"""Rendering generated projects for the tests, once per template content.

Renders are content-addressed: ``build/tests/<fingerprint>/`` where the fingerprint hashes copier.yml, the
template/ tree, the lock data in locks/ and the copier version. Tests running in parallel (pytest-xdist)
share them through a file lock per render, so a variant is rendered once however many tests need it, and an
edit to the template invalidates everything at once. Copier renders from a plain copy of the template (no
git: faster, and it includes uncommitted edits).

Level 2 renders all 864 variants, so a render's cost is the ladder's: ``fast_copier`` trims what repeats
(see there) and ``test_harness_renders_equal_plain_copier`` proves the output is byte for byte copier's own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib.metadata import version
from pathlib import Path
from types import CodeType
from typing import Any

import copier
import copier._main
from jinja2 import Environment

from variants import DEFAULT_VARIANT, OPTIONS, REPO_ROOT, variant_id

BUILD_ROOT = REPO_ROOT / "build" / "tests"
TEMPLATE_INPUTS = ("copier.yml", "template", "locks")
RUN_ID_VARIABLE = "RAMPART_TEST_RUN"


@cache
def fingerprint() -> str:
    digest = hashlib.sha256(version("copier").encode())
    for top in TEMPLATE_INPUTS:
        root = REPO_ROOT / top
        paths = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def work_dir() -> Path:
    path = BUILD_ROOT / fingerprint()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def template_source() -> Path:
    """A plain-folder copy of the template (copier.yml, template/ and the lock data in locks/)."""
    source = work_dir() / "template-source"
    with locked(source):
        if not (source / ".complete").exists():
            shutil.rmtree(source, ignore_errors=True)
            source.mkdir()
            shutil.copy2(REPO_ROOT / "copier.yml", source / "copier.yml")
            for folder in ("template", "locks"):
                shutil.copytree(
                    REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
                )
            (source / ".complete").touch()
    return source


# Jinja's compiled templates, shared by the renders of this process: copier builds a new Jinja environment
# per render, so every render compiled the same ~950 templates (file contents, path names, answers) again.
_COMPILED: dict[tuple[Any, ...], CodeType | str] = {}
COMPILE_REUSES = Counter[str]()  # how often a compile was served from _COMPILED (the proof test reads it)
_plain_compile = Environment.compile


def _environment_key(environment: Environment) -> tuple[Any, ...]:
    """What Jinja's compiled code depends on besides the source: syntax, whitespace, escaping, extensions,
    and which filters and tests exist (the code generator resolves their arguments at compile time)."""
    return (
        type(environment),
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
        environment.autoescape,
        environment.optimized,
        environment.is_async,
        tuple(sorted(environment.extensions)),
        tuple(sorted(environment.filters)),
        tuple(sorted(environment.tests)),
    )


def _memoized_compile(
    self: Environment,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> CodeType | str:
    if not isinstance(source, str):  # an already parsed template: nothing to share
        return _plain_compile(self, source, name, filename, raw, defer_init)  # type: ignore[call-overload]
    key = (_environment_key(self), source, name, filename, raw, defer_init)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _plain_compile(self, source, name, filename, raw, defer_init)  # type: ignore[call-overload]
    else:
        COMPILE_REUSES["reused"] += 1
    return compiled


@contextmanager
def fast_copier() -> Iterator[None]:
    """Copier, minus two costs that repeat identically in every render of a fresh project:

    - Jinja compiles: shared across renders (``_memoized_compile``), a code object per source and
      environment configuration. Same code, so the same output.
    - copier's per-file ``git config core.fileMode`` probe (one git process per rendered file, ~40% of a
      render's wall time): it only ever re-stages the executable bit of files a git index already tracks,
      and a fresh render under build/ (ignored, so untracked) never has one. The modes on disk are set
      as always.

    Only for ``render()``: copier runs elsewhere in the suite (updates in git repositories, the bench)
    stay untouched.
    """
    worker = copier._main.Worker
    sync_executable_bit = worker._sync_git_index_executable_bit
    Environment.compile = _memoized_compile  # type: ignore[method-assign,assignment]
    worker._sync_git_index_executable_bit = lambda self, dst_relpath, src_mode: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Environment.compile = _plain_compile  # type: ignore[method-assign]
        worker._sync_git_index_executable_bit = sync_executable_bit  # type: ignore[method-assign]


def render_name(answers: Mapping[str, Any]) -> str:
    """The variant's id, plus a hash of any free-text answers (names, e-mail) that differ per test."""
    name = variant_id({**DEFAULT_VARIANT, **answers})
    free_text = {key: value for key, value in sorted(answers.items()) if key not in OPTIONS}
    if free_text:
        name += "-" + hashlib.sha256(json.dumps(free_text).encode()).hexdigest()[:10]
    return name


def copy_template(answers: Mapping[str, Any], dest: Path) -> Path:
    """``copier copy`` of the template's plain copy into ``dest``, defaults for unanswered questions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(template_source()), str(dest), data=dict(answers), defaults=True, unsafe=True, quiet=True
        )
    return dest


def render(answers: Mapping[str, Any]) -> Path:
    """Render ``answers`` (defaults for the rest) once per template content; returns the project dir."""
    dest = work_dir() / "render" / render_name(answers)
    done = dest.with_name(dest.name + ".done")
    with locked(dest):
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)
            with fast_copier():
                copy_template(answers, dest)
            done.touch()
    return dest


def _summary_dir() -> Path:
    # One folder per pytest run (the controller names it; xdist workers inherit the variable).
    return BUILD_ROOT / "summary" / os.environ.get(RUN_ID_VARIABLE, "adhoc")


def start_run() -> None:
    os.environ[RUN_ID_VARIABLE] = f"{os.getpid()}-{time.time_ns()}"


def record(kind: str, key: str) -> None:
    """Count something for the run's closing summary (works across xdist workers)."""
    folder = _summary_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha256(key.encode()).hexdigest()[:20]).touch()


def note(kind: str, key: str, text: str) -> None:
    """A line for the run's closing summary, e.g. a measured size (one per key; works across workers)."""
    folder = _summary_dir().parent / "notes" / os.environ.get(RUN_ID_VARIABLE, "adhoc") / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha256(key.encode()).hexdigest()[:20]).write_text(text, encoding="utf-8")


def noted() -> list[str]:
    """The run's notes, sorted by kind then text; read once (the folder is removed)."""
    folder = _summary_dir().parent / "notes" / os.environ.get(RUN_ID_VARIABLE, "adhoc")
    if not folder.is_dir():
        return []
    lines = sorted(
        (kind.name, path.read_text(encoding="utf-8")) for kind in folder.iterdir() for path in kind.iterdir()
    )
    shutil.rmtree(folder, ignore_errors=True)
    return [text for _, text in lines]


def recorded() -> dict[str, int]:
    folder = _summary_dir()
    if not folder.is_dir():
        return {}
    counts = {kind.name: sum(1 for _ in kind.iterdir()) for kind in folder.iterdir()}
    shutil.rmtree(folder, ignore_errors=True)
    return counts
