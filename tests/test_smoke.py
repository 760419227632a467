"""Level 4 of the test ladder: generated services run.

1. Every distinct application: the 864 variants collapse to the few whose rendered src/ and pyproject.toml
   differ (ci, kubernetes and python_version change neither). Each distinct application is imported in one
   shared venv holding the union of their dependencies, started in-process with its lifespan, and probed.
2. The pairwise covering set (plus a project with unusual answers) gets the full treatment: a fresh copy,
   the generated Makefile's install (uv, shared cache), its own `make test`, `make lint`, `make
   typecheck`, `make security`, then the real server is booted and probed over HTTP.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest
import yaml

from rendering import locked, record, render, work_dir
from variants import (
    ALL_VARIANTS,
    DEFAULT_VARIANT,
    PAIRWISE_VARIANTS,
    REPO_ROOT,
    UNUSUAL_ANSWERS,
    variant_id,
)

DEV_BIN = Path(sys.executable).parent
UV = DEV_BIN / "uv"
PROBE = Path(__file__).with_name("probe_app.py")
COMMAND_TIMEOUT = 900
# How long a booted project may take to answer /health/live: imports and migrations on a loaded 2-core
# machine took 11 s; the wait ends as soon as the server answers.
SERVER_START_SECONDS = 60


def answers_of(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return answers


def package_of(project: Path) -> str:
    return str(answers_of(project)["package_name"])


def dependency_env(project: Path, scratch: Path) -> dict[str, str]:
    """Point a booted service at this machine's test dependencies, never at anything shared by name.

    PostgreSQL: the `test` database; SQLite: a file in a scratch directory; start-up migrations off
    (readiness only runs SELECT 1, and the generated tests cover migrations). Redis: db 15.
    """
    answers = answers_of(project)
    env = {}
    if answers["database"] == "postgres":
        env["DATABASE_URL"] = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
        env["APP_DB_MIGRATE_ON_STARTUP"] = "false"
    elif answers["database"] == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{scratch / 'service.db'}"
        env["APP_DB_MIGRATE_ON_STARTUP"] = "false"
    if answers["redis"]:
        env["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    return env


def application_hash(project: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([project / "pyproject.toml", *(project / "src").rglob("*.py")]):
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment minus anything that would leak into a generated project's run."""
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "MAKEFLAGS", "MFLAGS")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("APP_", "PYTEST_", "COV_CORE_"))
    }
    env.update(overrides)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def tail(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


def inner_failures(junit_xml: Path) -> list[str]:
    """``file::test: first line of the message`` for each test that failed or errored in a generated
    project's own run, from its JUnit XML: the output's tail is mostly the coverage table."""
    if not junit_xml.is_file():
        return [f"no {junit_xml.name}: pytest did not get as far as writing it"]
    found = []
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        for problem in (*case.iter("failure"), *case.iter("error")):
            where = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            found.append(f"{where}: {message[0] if message else problem.tag}")
    return found


def test_inner_failures_name_each_failing_test(tmp_path: Path) -> None:
    report = tmp_path / "inner.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_items" name="test_create" />'
        '<testcase classname="tests.test_items" name="test_list[page-2]">'
        '<failure message="assert 500 == 200&#10;+  where 500 = status">trace</failure></testcase>'
        '<testcase classname="tests.test_redis" name="test_outage">'
        '<error message="fixture broke" /></testcase>'
        '<testcase classname="tests.test_skip" name="test_later"><skipped message="no Redis" /></testcase>'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    assert inner_failures(report) == [
        "tests/test_items.py::test_list[page-2]: assert 500 == 200",
        "tests/test_redis.py::test_outage: fixture broke",
    ]
    assert inner_failures(tmp_path / "missing.xml") == [
        "no missing.xml: pytest did not get as far as writing it"
    ]


def dependencies(project: Path) -> set[str]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = pyproject["project"]["dependencies"]
    groups = pyproject.get("dependency-groups", {})
    return {*runtime, *(item for group in groups.values() for item in group if isinstance(item, str))}


def locked_versions(project: Path) -> dict[str, str]:
    """Package -> version(s) in the project's uv.lock (a fork on Python's version can lock two)."""
    found: dict[str, list[str]] = {}
    for package in tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))["package"]:
        if package.get("source", {}).get("editable") != ".":
            found.setdefault(package["name"], []).append(package["version"])
    return {name: ", ".join(sorted(versions)) for name, versions in found.items()}


def drift(shipped: dict[str, str], tested: dict[str, str]) -> str:
    """What a latest-dependencies run changed: named, so a failure says which release broke it."""
    changed = [
        f"{name} {shipped.get(name, '(new)')} -> {tested.get(name, '(gone)')}"
        for name in sorted(shipped.keys() | tested.keys())
        if shipped.get(name) != tested.get(name)
    ]
    if not changed:
        return "every dependency at its shipped version (nothing newer is allowed)"
    return "dependencies newer than the shipped uv.lock: " + "; ".join(changed)


def shipped_pins(projects: list[Path]) -> list[str]:
    """Every pin of the projects' shipped uv.lock files, as constraints (with their markers)."""
    pins: set[str] = set()
    for project in projects:
        command = [str(UV), "export", "--quiet", "--frozen", "--all-groups", "--no-hashes"]
        command += ["--no-emit-project", "--no-header", "--no-annotate"]
        result = run(command, project, clean_env(UV_PYTHON_DOWNLOADS="never"))
        assert result.returncode == 0, f"uv export failed in {project}:\n{tail(result)}"
        pins.update(line.strip() for line in result.stdout.splitlines() if line.strip())
    return sorted(pins)


def union_venv(requirements: set[str], constraints: list[str]) -> Path:
    """One venv holding every distinct application's dependencies at the versions their locks pin (or,
    with ``constraints`` empty, at the newest the ranges allow), keyed by both."""
    key = hashlib.sha256("\n".join([*sorted(requirements), "--", *constraints]).encode()).hexdigest()[:12]
    venv = work_dir() / "venvs" / f"union-{key}"
    with locked(venv):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            env = clean_env(UV_PYTHON_DOWNLOADS="never")
            pins = venv.with_name(venv.name + "-constraints.txt")
            pins.write_text("".join(f"{line}\n" for line in constraints), encoding="utf-8")
            for command in (
                [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)],
                [
                    str(UV),
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(venv / "bin" / "python"),
                    "--constraint",
                    str(pins),
                    *sorted(requirements),
                ],
            ):
                result = run(command, REPO_ROOT, env)
                assert result.returncode == 0, f"{' '.join(command)} failed:\n{tail(result)}"
            (venv / ".complete").touch()
    return venv


# `make test-latest`: every generated dependency at the newest version its range allows instead of the
# shipped lock's, so an upstream release that breaks generated projects is met here before users meet it.
LATEST = os.environ.get("RAMPART_LATEST_DEPENDENCIES") == "1"
APP_SHARDS = 3  # the distinct applications are probed in this many tests, so xdist workers share them


@pytest.mark.smoke
@pytest.mark.parametrize("shard", range(APP_SHARDS), ids=lambda shard: f"shard{shard + 1}of{APP_SHARDS}")
def test_every_distinct_application_boots_and_answers_probes(shard: int, tmp_path: Path) -> None:
    applications: dict[str, list[dict[str, Any]]] = {}
    projects: dict[str, Path] = {}
    for answers in ALL_VARIANTS:
        project = render(answers)
        digest = application_hash(project)
        applications.setdefault(digest, []).append(answers)
        projects.setdefault(digest, project)
    requirements = set().union(*(dependencies(project) for project in projects.values()))
    pins = [] if LATEST else shipped_pins(list(projects.values()))
    venv = union_venv(requirements, pins)
    mine = sorted(projects)[shard::APP_SHARDS]
    assert mine, f"shard {shard + 1} of {APP_SHARDS} got no application: lower APP_SHARDS"

    failures = []
    for digest in mine:
        project = projects[digest]
        scratch = tmp_path / digest[:12]
        scratch.mkdir()
        env = clean_env(
            PYTHONPATH=str(project / "src"),
            APP_LOG_LEVEL="WARNING",
            APP_LOG_FORMAT="json",
            **dependency_env(project, scratch),
        )
        # Run from the scratch directory: the project's own tree stays exactly as rendered.
        env["APP_MIGRATIONS_PATH"] = str(project / "migrations")
        result = run([str(venv / "bin" / "python"), str(PROBE), package_of(project)], scratch, env)
        if result.returncode != 0:
            examples = ", ".join(variant_id(answers) for answers in applications[digest][:3])
            failures.append(f"application of {examples}:\n{tail(result)}")
        else:
            record("distinct_apps", digest)
    print(
        f"{len(ALL_VARIANTS)} variants -> {len(projects)} distinct applications; shard {shard + 1}: "
        f"{len(mine) - len(failures)} of {len(mine)} answered every probe"
    )
    if failures and LATEST:
        installed = {}
        for line in run(
            [str(UV), "pip", "freeze", "--python", str(venv / "bin" / "python")], tmp_path, clean_env()
        ).stdout.splitlines():
            name, _, version = line.partition("==")
            installed[name.lower()] = version
        shipped: dict[str, str] = {}
        for project in projects.values():
            shipped.update(locked_versions(project))
        failures.append(drift(shipped, {name: installed[name] for name in shipped if name in installed}))
    assert not failures, "\n\n".join(failures)


def interpreter(version: str) -> str | None:
    """A working pythonX.Y on this machine (PATH first, then pyenv's versions), or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def boot_and_probe(project: Path, env: dict[str, str]) -> list[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(project / ".venv" / "bin" / "python"), "-m", package_of(project)],
        cwd=project,
        env={**env, "APP_PORT": str(port), "APP_LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    failures = []
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            try:
                if http_get(f"{base}/health/live")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            return [f"server did not answer /health/live within {SERVER_START_SECONDS}s"]
        for path in ("/health/ready", "/health/startup", "/health", "/docs"):
            status = http_get(base + path)[0]
            if status != 200:
                failures.append(f"{path} answered {status}")
        status, _, body = http_get(f"{base}/metrics")
        if status != 200 or b"# TYPE http_requests_total counter" not in body:
            failures.append(f"/metrics answered {status} without http_requests_total")
        status, headers, body = http_get(f"{base}/nope", {"X-Request-ID": "full-smoke-request-1"})
        if status != 404 or headers.get("content-type") != "application/problem+json":
            failures.append(f"unknown route: {status} {headers.get('content-type')}")
        if headers.get("x-request-id") != "full-smoke-request-1" or b"full-smoke-request-1" not in body:
            failures.append("unknown route did not carry the request ID")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output = server.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0].decode(errors="replace")
            failures.append("server did not stop within 30s of SIGTERM")
    if server.returncode not in (0, -signal.SIGTERM):
        failures.append(f"server exited with {server.returncode}")
    if failures:
        failures.append(f"server output:\n{output[-4000:]}")
    return failures


# What a developer's shell and a .env edited for a local run may hold. The generated tests must see none of
# it (their conftest hides every settings variable and the .env file): `make test` runs with both in place.
CALLERS_SETTINGS = {
    "APP_ENVIRONMENT": "staging",
    "APP_LOG_LEVEL": "CRITICAL",
    "APP_PORT": "not-a-port",
    "APP_RATE_LIMIT_GLOBAL": "1/minute",
    "APP_MAX_BODY_BYTES": "5",
}
LOCAL_DOTENV = "APP_ENVIRONMENT=production\nAPP_LOG_FORMAT=human\nAPP_DOCS_ENABLED=false\nAPP_API_KEYS=x\n"
# Another project's servers, on a closed port: what a variant without that dependency must ignore.
ELSEWHERE = {
    "DATABASE_URL": "postgresql://another-project@127.0.0.1:9/theirs",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


def callers_environment(project: Path, scratch: Path) -> dict[str, str]:
    """CALLERS_SETTINGS plus dependency URLs: the real test servers where the variant uses them."""
    real = {
        name: value
        for name, value in dependency_env(project, scratch).items()
        if not value.startswith("sqlite") and not name.startswith("APP_")
    }
    return {**CALLERS_SETTINGS, **ELSEWHERE, **real}


FULL_SMOKES = [pytest.param(answers, id=variant_id(answers)) for answers in PAIRWISE_VARIANTS]
FULL_SMOKES.append(pytest.param({**DEFAULT_VARIANT, **UNUSUAL_ANSWERS}, id="unusual-answers"))


@pytest.mark.smoke
@pytest.mark.parametrize("answers", FULL_SMOKES)
def test_full_smoke(answers: dict[str, Any], tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(render(answers), project)
    python = interpreter(str(answers["python_version"])) or "python3"
    # The unusual-answers project also proves `make install` bootstraps uv when none is on PATH.
    path = os.environ["PATH"] if "project_name" in answers else f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}"
    # mypy's incremental cache, shared by the full smokes one xdist worker runs (one writer at a time): the
    # libraries every variant installs are analysed once, not once per smoke. mypy reuses a module's entry
    # only while its source hash and the interfaces it imports are unchanged, which is what makes its
    # incremental mode equal to a cold run; any module of a variant that differs is checked again.
    mypy_cache = work_dir() / "mypy-cache" / os.environ.get("PYTEST_XDIST_WORKER", "main")
    env = clean_env(PYTHON=python, PATH=path, MYPY_CACHE_DIR=str(mypy_cache))
    shipped = (project / "uv.lock").read_bytes()
    context = ""  # what differs from the project as generated, for every failure below
    if LATEST:
        result = run([str(UV), "lock", "--upgrade", "--quiet"], project, env)
        assert result.returncode == 0, f"uv lock --upgrade failed:\n{tail(result)}"
        context = "\nwith " + drift(locked_versions(render(answers)), locked_versions(project))
    result = run(["make", "--no-print-directory", "install"], project, env)
    assert result.returncode == 0, f"make install failed (python {python}):\n{tail(result)}{context}"
    if not LATEST:
        assert (project / "uv.lock").read_bytes() == shipped, "make install changed the shipped uv.lock"
    dotenv = project / ".env"
    dotenv.write_text(LOCAL_DOTENV, encoding="utf-8")
    junit = tmp_path / "inner-junit.xml"
    inner_env = {**env, **callers_environment(project, tmp_path), "PYTEST_ADDOPTS": f"--junitxml={junit}"}
    result = run(["make", "--no-print-directory", "test"], project, inner_env)
    assert result.returncode == 0, (
        "make test with the caller's settings around failed; the project's failing tests:\n  "
        + "\n  ".join(inner_failures(junit))
        + f"\n\noutput's tail:\n{tail(result)}{context}"
    )
    dotenv.unlink()
    for target in ("lint", "typecheck", "security"):
        result = run(["make", "--no-print-directory", target], project, env)
        assert result.returncode == 0, f"make {target} failed (python {python}):\n{tail(result)}{context}"
    failures = boot_and_probe(project, {**env, **dependency_env(project, tmp_path)})
    assert not failures, "\n".join(failures) + context
    record("full_smokes", variant_id(answers) + str(sorted(answers.items())))
