"""Template timings: render one project, the answer matrix, `copier update`, and the `make test` ladder.

Runs in the dev venv (.venv: copier, and tests/variants.py for the matrix). Every number is measured here;
where the full matrix would blow the bench's time budget, a documented, evenly spread sample is rendered
and the full-matrix figure is labelled as an estimate from that sample.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import copier
from procs import say
from service import REPO_ROOT, render

sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import demo

from variants import ALL_VARIANTS

COPIER = REPO_ROOT / ".venv" / "bin" / "copier"
# Where a test run may leave its duration ({"seconds": ..., "finished": ...}); nothing else is trusted.
MAKE_TEST_RECORD = REPO_ROOT / "build" / "tests" / "last-run.json"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def plain_source(dest: Path) -> Path:
    """copier.yml + template/ copied to a plain folder: how the test suite renders (no git clone)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "copier.yml", dest / "copier.yml")
    shutil.copytree(REPO_ROOT / "template", dest / "template", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def time_renders(source: Path, scratch: Path, count: int) -> list[float]:
    samples = []
    for number in range(count):
        dest = scratch / f"one-{number}"
        began = time.perf_counter()
        render(dest, source=source)
        samples.append(time.perf_counter() - began)
        shutil.rmtree(dest, ignore_errors=True)
    return samples


def _render_variant(job: tuple[str, str, dict[str, Any]]) -> None:
    source, dest, answers = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(source, dest, data=answers, defaults=True, unsafe=True, quiet=True)
    shutil.rmtree(dest, ignore_errors=True)


def spread_sample(items: Sequence[Any], size: int) -> list[Any]:
    """``size`` items evenly spread over ``items`` (all of them when size >= len)."""
    if size >= len(items):
        return list(items)
    step = len(items) / size
    return [items[int(index * step)] for index in range(size)]


def time_matrix(source: Path, scratch: Path, sample: int | None, workers: int = 2) -> dict[str, Any]:
    variants = ALL_VARIANTS if sample is None else spread_sample(ALL_VARIANTS, sample)
    jobs = [(str(source), str(scratch / f"v{index}"), answers) for index, answers in enumerate(variants)]
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_render_variant, jobs))
    wall = time.perf_counter() - began
    full = len(ALL_VARIANTS)
    result: dict[str, Any] = {
        "variants": len(variants),
        "of": full,
        "workers": workers,
        "wall_seconds": wall,
        "measured_full": len(variants) == full,
    }
    result["full_matrix_seconds"] = wall if result["measured_full"] else wall / len(variants) * full
    return result


def oldest_release_tag() -> str | None:
    tags = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "tag", "--list", "v*", "--sort=version:refname"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return tags[0] if tags else None


def time_update(scratch: Path) -> dict[str, Any]:
    """Render at the oldest v* tag into a git repo, commit, then time `copier update` to HEAD (CLI)."""
    tag = oldest_release_tag()
    if tag is None:
        return {"skipped": "no v* git tag to update from"}
    project = scratch / "update-project"
    shutil.rmtree(project, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(REPO_ROOT), str(project), defaults=True, unsafe=True, quiet=True, vcs_ref=tag)
    env = {**os.environ, **GIT_IDENTITY}
    for command in (
        ["git", "init", "--quiet"],
        ["git", "add", "-A"],
        ["git", "commit", "--quiet", "-m", tag],
    ):
        subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)
    began = time.perf_counter()
    result = subprocess.run(
        [str(COPIER), "update", "--trust", "--defaults", "--vcs-ref", "HEAD", "--quiet"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    shutil.rmtree(project, ignore_errors=True)
    if result.returncode != 0:
        return {"skipped": f"copier update from {tag} failed: {result.stderr.strip()[-500:]}", "from": tag}
    return {"seconds": seconds, "from": tag, "to": "HEAD (working tree)"}


def time_demo(scratch: Path, bound: float = 300) -> dict[str, Any]:
    """`make demo` from a cold start (a folder that does not exist yet; uv's package cache as it is): the
    seconds until its banner, printed once the service answers /health/live. Then Ctrl-C, as a user would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = scratch / "demo"
    shutil.rmtree(dest, ignore_errors=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("APP_")}
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "demo.py"),
        "--dest",
        str(dest),
        "--port",
        str(port),
    ]
    began = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert process.stdout is not None
    try:
        demo.lines_until_banner_end(demo.follow(process.stdout), bound)
        seconds = time.perf_counter() - began
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    except (TimeoutError, RuntimeError, subprocess.TimeoutExpired) as error:
        return {"skipped": f"make demo did not answer: {str(error).splitlines()[0]}"}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(dest, ignore_errors=True)
    return {
        "seconds": seconds,
        "how": "scripts/demo.py into a new folder until its banner (service answering)",
    }


def make_test_duration(run_it: bool, log: Path) -> dict[str, Any]:
    """The `make test` wall time: measured when asked (BENCH_MAKE_TEST=1), else read from a recorded run."""
    if run_it:
        say("running `make test` (BENCH_MAKE_TEST=1), output in " + str(log))
        began = time.perf_counter()
        with log.open("wb") as output:
            result = subprocess.run(
                ["make", "test"], cwd=REPO_ROOT, stdout=output, stderr=output, check=False
            )
        seconds = time.perf_counter() - began
        return {"seconds": seconds, "source": "measured now", "exit_code": result.returncode}
    if MAKE_TEST_RECORD.exists():
        record = json.loads(MAKE_TEST_RECORD.read_text())
        return {"seconds": float(record["seconds"]), "source": f"recorded in {MAKE_TEST_RECORD}", **record}
    return {"skipped": "not measured (run `make test`, or BENCH_MAKE_TEST=1 make bench to time it here)"}


def render_profile(source: Path, scratch: Path, out: Path) -> dict[str, Any]:
    """cProfile of one render, top functions by cumulative time, and the two big buckets of a copier
    render: jinja compiling every path and file, and the git commands copier runs (through plumbum)."""
    profiler = cProfile.Profile()
    profiler.enable()
    render(scratch / "profiled", source=source)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(35)
    out.write_text(text.getvalue())
    shutil.rmtree(scratch / "profiled", ignore_errors=True)
    buckets = {
        "jinja compile": ("jinja2/environment.py", "compile"),
        "git commands": ("plumbum/commands/base.py", "run"),
    }
    found: dict[str, Any] = {"file": str(out)}
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    for label, (file_end, function) in buckets.items():
        for (filename, _, name), (_, calls, _, cumulative, _) in table.items():
            if filename.endswith(file_end) and name == function:
                found[label] = {"seconds": cumulative, "calls": calls}
    return found


def measure(
    *, renders: int, matrix_sample: int | None, run_make_test: bool, results_dir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # Outside any git work tree, like a user's fresh `copier copy`: inside one (build/ of this repo),
    # copier also runs `git update-index` for every rendered file, about 0.3 s more per project.
    with tempfile.TemporaryDirectory(prefix="rampart-bench-") as work:
        folder = Path(work)
        source = plain_source(folder / "source")
        say(f"template: rendering one project {renders}x from the git working tree, {renders}x from a folder")
        git_samples = time_renders(REPO_ROOT, folder, renders)
        plain_samples = time_renders(source, folder, renders)
        results["render_one_git"] = {"samples": git_samples, "median": statistics.median(git_samples)}
        results["render_one_plain"] = {"samples": plain_samples, "median": statistics.median(plain_samples)}
        what = "all" if matrix_sample is None else f"a sample of {matrix_sample} of"
        say(f"template: rendering {what} {len(ALL_VARIANTS)} variants in a pool of 2")
        results["matrix"] = time_matrix(source, folder / "matrix", matrix_sample)
        say("template: copier update from the oldest release tag to HEAD")
        try:
            results["update"] = time_update(folder)
        except (subprocess.CalledProcessError, OSError, RuntimeError, ValueError) as error:
            results["update"] = {"skipped": f"copier update could not be set up: {error}"}
        say("template: make demo from a cold start until its banner")
        results["demo"] = time_demo(folder)
        if statistics.median(git_samples) >= 1.0:
            results["render_profile"] = render_profile(source, folder, results_dir / "render-profile.txt")
    results["make_test"] = make_test_duration(run_make_test, results_dir / "make-test.log")
    return results
