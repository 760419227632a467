"""`make bench`: what the hardening costs, measured in one run; a markdown report on stdout and
build/bench/results.json (raw samples, medians, machine). BENCH_QUICK=1 makes a fast, rougher run.

1. Hardening overhead: the generated default service, a bare FastAPI app with the same endpoint, and the
   same endpoint behind a stack assembled from libraries (slowapi, prometheus-fastapi-instrumentator,
   BaseHTTPMiddleware logger and headers), all on uvicorn + uvloop + httptools, 1 worker, pinned to CPU 0,
   loaded from CPU 1 (wrk when installed, else loadgen.py); rounds interleaved, medians reported. The
   server's own CPU time per request (/proc) is the robust number when the load generator saturates.
2. Micro-costs of the service's building blocks (micro.py), Redis-backed limiting against a Redis PING.
3. Cold start to the first 200 on /health/live, and resident memory after the load.
4. Template: render one project, the answer matrix, `copier update`, and the `make test` ladder.

Every target of the issue is printed with its measured value and "pass" or "short by X"; when a hot-path
target is missed, the hardened server is profiled under load with py-spy and the profile saved beside the
results. The orchestration is hand-written (no benchmark framework runs servers, load and /proc together).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import parse_wrk
from procs import (
    UVICORN_FLAGS,
    Server,
    ServerFailed,
    cpu_pinning,
    process_cpu_seconds,
    process_wait_seconds,
    rss_mb,
    say,
)
from report import (
    Table,
    Target,
    format_value,
    median,
    ratio,
    summarize_profile,
    targets_table,
)
from service import REPO_ROOT, prepare

BENCH_DIR = Path(__file__).resolve().parent
INFO_PATH = "/api/v1/info"
APPS = ("bare", "hardened", "library")
# High enough that the load never meets a 429, so every request still runs the limiter's allowed path;
# the same number of limits as the shipped defaults (two per client, one global). Short windows: a moving
# window holds every hit of its span up to its amount, so with hour-long windows and amounts out of reach
# the RSS row would measure the length of the run (~32 bytes per request), not the service. With the
# shipped limits a window never holds more hits than its amount (100 or 1000 per client).
PER_CLIENT_LIMITS = "100000000/second;200000000/2 seconds"
GLOBAL_LIMITS = "1000000000/second"


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would configure the apps under test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("APP_", "BENCH_"))}
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    return env


def service_environment(scratch: Path, service_name: str, version: str) -> dict[str, str]:
    """The generated service as it ships for development, with JSON logs and limits out of reach; the
    bare and library apps answer the same JSON."""
    return {
        "APP_ENVIRONMENT": "development",
        "APP_LOG_FORMAT": "json",
        "APP_LOG_LEVEL": "INFO",
        "APP_RATE_LIMIT_PER_CLIENT": PER_CLIENT_LIMITS,
        "APP_RATE_LIMIT_GLOBAL": GLOBAL_LIMITS,
        "DATABASE_URL": f"sqlite:///{scratch / 'bench.db'}",
        # Deployments migrate with `make migrate`; the dev default (migrate at start-up) has its own row.
        "APP_DB_MIGRATE_ON_STARTUP": "false",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "APP_SERVICE_NAME": service_name,
        "BENCH_SERVICE_NAME": service_name,
        "BENCH_SERVICE_VERSION": version,
        "BENCH_ENVIRONMENT": "development",
        "BENCH_RATE_LIMIT_PER_CLIENT": PER_CLIENT_LIMITS,
        "BENCH_RATE_LIMIT_GLOBAL": GLOBAL_LIMITS,
    }


@dataclass(frozen=True)
class Plan:
    rounds: int
    warmup: float
    duration: float
    connections: int
    cold_runs: int
    micro_seconds: float
    micro_repeats: int
    renders: int
    matrix_sample: int | None
    profile_seconds: float

    @classmethod
    def make(cls, quick: bool, full_matrix: bool) -> Plan:
        if quick:
            return cls(2, 0.5, 2.0, 10, 2, 0.05, 3, 1, None if full_matrix else 6, 4.0)
        return cls(5, 1.0, 5.0, 10, 5, 0.2, 7, 3, None if full_matrix else 24, 10.0)


def machine_info(loadgen: str) -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    describe = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--tags", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    pins = {}
    for line in (BENCH_DIR / "requirements.txt").read_text().splitlines():
        name, _, pinned = line.partition("==")
        if name in {"fastapi", "starlette", "uvicorn", "uvloop", "httptools", "limits", "structlog"}:
            pins[name] = pinned.split(";")[0].strip()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_generator": loadgen,
        "taskset": shutil.which("taskset") is not None,
        "load_average_at_start": os.getloadavg(),
        "template": describe,
        "pins": pins,
    }


class Bench:
    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.python = Path(args.bench_python).absolute()
        self.out: Path = args.out.absolute()
        self.scratch = self.out / "run"
        self.wrk = None if os.environ.get("BENCH_LOADGEN") == "python" else shutil.which("wrk")
        self.package = ""
        self.project = self.scratch
        self.service_env: dict[str, str] = {}
        self.no_database_variant: Path | None = None

    # -- servers ------------------------------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        return {**clean_environment(), **self.service_env}

    def server(self, app: str, label: str | None = None, **extra_env: str) -> Server:
        name = label or app
        if app == "hardened":
            target = ["--factory", f"{self.package}.app:app_factory"]
        else:
            target = [f"{app}_app:app", "--app-dir", str(BENCH_DIR)]
        command = [str(self.python), "-m", "uvicorn", *target, *UVICORN_FLAGS]
        return Server(
            name,
            command,
            env={**self.base_env(), **extra_env},
            cwd=self.project,  # the service finds alembic.ini and migrations/ from its project folder
            log=self.scratch / f"{name}.log",
            cpu=0,
        )

    def configure_service(self, answers: dict[str, Any], project: Path) -> None:
        self.package = str(answers["package_name"])
        self.project = project
        version = "0.0.0"
        for line in (project / "pyproject.toml").read_text().splitlines():
            if line.startswith("version = "):
                version = line.split('"')[1]
                break
        self.service_env = service_environment(self.scratch, f"rampart-bench-{os.getpid()}", version)

    # -- load ---------------------------------------------------------------------------------------------
    def load(self, server: Server, duration: float, warmup: float) -> dict[str, Any]:
        """One measured window of load on ``server``, from CPU 1."""
        server.check_alive()
        if self.wrk:
            return self._load_wrk(self.wrk, server, duration, warmup)
        return self._load_python(server, duration, warmup)

    def _load_wrk(self, wrk: str, server: Server, duration: float, warmup: float) -> dict[str, Any]:
        url = f"http://127.0.0.1:{server.port}{INFO_PATH}"
        headers = [
            "-H",
            "Accept: application/json",
            "-H",
            "Accept-Encoding: gzip, deflate",
            "-H",
            "User-Agent: rampart-bench/1",
        ]
        base = [*cpu_pinning(1), wrk, "-t1", f"-c{self.plan.connections}", "--latency", *headers]
        seconds = max(1, round(duration))
        subprocess.run([*base, f"-d{max(1, round(warmup))}s", url], capture_output=True, check=True)
        cpu_before = process_cpu_seconds(server.pid)
        wait_before = process_wait_seconds(server.pid)
        began = time.perf_counter()
        output = subprocess.run([*base, f"-d{seconds}s", url], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - began
        cpu = process_cpu_seconds(server.pid) - cpu_before
        wait = process_wait_seconds(server.pid) - wait_before
        result = parse_wrk(output.stdout)
        result.update(
            connections=self.plan.connections,
            seconds=wall,
            server_cpu_seconds=cpu,
            server_cpu_us_per_request=cpu / result["requests"] * 1e6 if result["requests"] else math.nan,
            server_cpu_utilisation=cpu / wall,
            server_cpu_wait_share=wait / wall,
            generator_cpu_utilisation=math.nan,
        )
        return result

    def _load_python(self, server: Server, duration: float, warmup: float) -> dict[str, Any]:
        command = [
            *cpu_pinning(1),
            str(self.python),
            str(BENCH_DIR / "loadgen.py"),
            "--port",
            str(server.port),
            "--path",
            INFO_PATH,
            "--connections",
            str(self.plan.connections),
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
            "--pid",
            str(server.pid),
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=False)
        if output.returncode != 0:
            server.check_alive()
            raise RuntimeError(f"the load generator failed against {server.name}:\n{output.stderr[-2000:]}")
        measured: dict[str, Any] = json.loads(output.stdout)
        return measured

    def same_answers(self, servers: dict[str, Server]) -> dict[str, Any]:
        """Every app answers the same JSON; the hardened one with its hardening headers (limiter on)."""
        bodies, headers = {}, {}
        for name, server in servers.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{INFO_PATH}", timeout=5) as response:
                bodies[name] = response.read().decode()
                headers[name] = dict(response.headers.items())
        if len(set(bodies.values())) != 1:
            say(f"warning: the apps answer different JSON: {bodies}")
        hardened = {name.lower() for name in headers["hardened"]}
        missing = {"ratelimit-limit", "x-request-id", "content-security-policy"} - hardened
        if missing:
            say(f"warning: the hardened service's answer lacks {sorted(missing)}: is its hardening on?")
        return {"bodies": bodies, "headers": headers}

    def run_load(self) -> dict[str, Any]:
        plan = self.plan
        say(
            f"load: {plan.rounds} interleaved rounds x {len(APPS)} apps, {plan.warmup:g}s warm-up + "
            f"{plan.duration:g}s measured, {plan.connections} connections, "
            f"generator: {'wrk' if self.wrk else 'loadgen.py (python, uvloop)'}"
        )
        servers = {app: self.server(app) for app in APPS}
        rounds: list[dict[str, Any]] = []
        try:
            for server in servers.values():
                server.start()
            bodies = self.same_answers(servers)
            for number in range(plan.rounds):
                order = APPS[number % len(APPS) :] + APPS[: number % len(APPS)]  # rotate: no position bias
                measured = {}
                for app in order:
                    measured[app] = self.load(servers[app], plan.duration, plan.warmup)
                    if measured[app]["errors"]:
                        say(f"warning: {app} answered {measured[app]['errors']} non-200 responses")
                rounds.append(measured)
                say(
                    f"  round {number + 1}: "
                    + ", ".join(
                        f"{app} {measured[app]['rps']:,.0f} req/s "
                        f"{measured[app].get('server_cpu_us_per_request') or math.nan:.0f} us CPU/req"
                        for app in APPS
                    )
                )
            rss = {app: rss_mb(server.pid) for app, server in servers.items()}
            access_lines = (self.scratch / "hardened.log").read_bytes().count(b'"event":"request"')
            result = {
                "rounds": rounds,
                "rss_after_load_mb": rss,
                "answers": bodies,
                # One access-log line per request served: the hardened service logged as it ships.
                "hardened_access_log_lines": access_lines,
            }
            result["medians"] = load_medians(rounds)
            result["ratios"] = load_ratios(rounds)
            hot = hot_path_targets(result)
            if any(not target.passed for target in hot):
                result["profile"] = self.profile(servers["hardened"])
            return result
        finally:
            for server in servers.values():
                server.stop()

    def profile(self, server: Server) -> dict[str, Any]:
        """py-spy on the hardened server under load: the flame data and a summary beside the results."""
        spy = self.python.parent / "py-spy"
        target = self.out / "hardened-profile.speedscope.json"
        seconds = self.plan.profile_seconds
        say(
            f"a hot-path target is short: profiling the hardened server under load with py-spy ({seconds:g}s)"
        )
        command = [
            str(spy),
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "speedscope",
            "--output",
            str(target),
        ]
        spy_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        self.load(server, seconds + 1, 0.0)
        _, spy_error = spy_process.communicate(timeout=seconds + 60)
        if spy_process.returncode != 0 or not target.exists():
            return {"skipped": f"py-spy failed ({spy_process.returncode}): {spy_error.strip()[-500:]}"}
        summary = summarize_profile(speedscope_stacks(target))
        summary_path = self.out / "hardened-profile.txt"
        summary_path.write_text(summary + "\n")
        return {"speedscope": str(target), "summary_file": str(summary_path), "summary": summary}

    def import_profile(self) -> dict[str, Any]:
        """`python -X importtime`: import time by top-level package, hardened against bare (start-up and
        memory mostly go to imports), saved beside the results."""
        imported: dict[str, dict[str, float]] = {}
        for name, statement in (("hardened", f"import {self.package}.app"), ("bare", "import bare_app")):
            env = {**self.base_env(), "PYTHONPATH": str(BENCH_DIR)}
            done = subprocess.run(
                [str(self.python), "-X", "importtime", "-c", statement],
                cwd=self.project,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            imported[name] = import_times(done.stderr)
        extra = {
            package: us for package, us in imported["hardened"].items() if package not in imported["bare"]
        }
        hardened_ms, bare_ms = (sum(imported[name].values()) / 1000 for name in ("hardened", "bare"))
        lines = [
            f"import time (self, summed per top-level package): hardened {hardened_ms:.0f} ms, "
            f"bare {bare_ms:.0f} ms",
            "packages the hardened service imports and the bare app does not:",
        ]
        for package, us in sorted(extra.items(), key=lambda item: -item[1])[:15]:
            lines.append(f"  {us / 1000:7.1f} ms  {package}")
        path = self.out / "hardened-importtime.txt"
        path.write_text("\n".join(lines) + "\n")
        return {"file": str(path), "summary": "\n".join(lines), "self_us_by_package": imported}

    # -- cold start ---------------------------------------------------------------------------------------
    def run_cold_start(self) -> dict[str, Any]:
        variants: dict[str, Callable[[], Server]] = {
            "bare": lambda: self.server("bare", "cold-bare"),
            "hardened": lambda: self.server("hardened", "cold-hardened"),
            "library": lambda: self.server("library", "cold-library"),
            # The development default: alembic migrates a fresh SQLite file during start-up.
            "hardened_dev_migrations": lambda: self.server(
                "hardened", "cold-hardened-migrating", APP_DB_MIGRATE_ON_STARTUP="true"
            ),
        }
        if self.no_database_variant is not None:
            # The same service rendered with database=none, its package first on the path: how much of
            # the start-up and memory over bare is the database (SQLAlchemy, the engine) and not hardening.
            no_database_src = str(self.no_database_variant / "src")
            variants["hardened_no_database"] = lambda: self.server(
                "hardened", "cold-hardened-no-database", PYTHONPATH=no_database_src
            )
        say(
            f"cold start: {self.plan.cold_runs} interleaved starts of each app, to the first 200 on "
            "/health/live"
        )
        samples: dict[str, list[float]] = {name: [] for name in variants}
        rss: dict[str, list[float]] = {name: [] for name in variants}
        errors: dict[str, str] = {}
        for _ in range(self.plan.cold_runs):
            for name, make in variants.items():
                if name in errors:
                    continue
                (self.scratch / "bench.db").unlink(missing_ok=True)
                try:
                    with make() as server:
                        samples[name].append(server.start())
                        rss[name].append(rss_mb(server.pid))
                except ServerFailed as error:
                    say(f"cold start of {name} failed: {error}")
                    errors[name] = str(error)
        (self.scratch / "bench.db").unlink(missing_ok=True)
        if "bare" in errors or "hardened" in errors:
            raise ServerFailed(errors.get("bare") or errors["hardened"])
        return {
            "samples_seconds": samples,
            "median_seconds": {name: median(values) for name, values in samples.items()},
            "rss_idle_mb": {name: median(values) for name, values in rss.items()},
            "errors": errors,
        }

    # -- micro --------------------------------------------------------------------------------------------
    def run_micro(self, redis_variant: Path) -> dict[str, Any]:
        say("micro-costs: the service's limiter, breaker, retry, log line and middleware, per call")
        results: dict[str, Any] = {}
        for part, pythonpath in (("core", None), ("redis", redis_variant / "src")):
            out = self.scratch / f"micro-{part}.json"
            env = self.base_env()
            if pythonpath is not None:
                env["PYTHONPATH"] = str(pythonpath)
            command = [
                str(self.python),
                str(BENCH_DIR / "micro.py"),
                "--package",
                self.package,
                "--part",
                part,
                "--out",
                str(out),
                "--seconds",
                str(self.plan.micro_seconds),
                "--repeats",
                str(self.plan.micro_repeats),
            ]
            # Not pinned: on a shared machine the scheduler finds the idler CPU for a single thread.
            done = subprocess.run(command, cwd=self.scratch, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                results[part] = {"skipped": f"micro.py --part {part} failed: {done.stderr.strip()[-1500:]}"}
            else:
                results[part] = json.loads(out.read_text())
        return results

    # -- all ----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        began = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        for stale in ("hardened-profile.speedscope.json", "hardened-profile.txt", "render-profile.txt"):
            (self.out / stale).unlink(missing_ok=True)
        results: dict[str, Any] = {
            "machine": machine_info("wrk" if self.wrk else "loadgen.py"),
            "plan": self.plan.__dict__,
        }
        answers, project, variants = prepare(self.out, self.python, self.args.template_ref)
        self.configure_service(answers, project)
        self.no_database_variant = variants["no_database"]
        results["service"] = {"answers": answers, "env": self.service_env}
        results["load"] = guarded("load", self.run_load)
        results["cold_start"] = guarded("cold start", self.run_cold_start)
        results["micro"] = guarded("micro-costs", lambda: self.run_micro(variants["redis"]))
        if self.args.skip_template:
            results["template"] = {"skipped": "--skip-template"}
        else:
            from template_timings import measure

            results["template"] = guarded(
                "template timings",
                lambda: measure(
                    renders=self.plan.renders,
                    matrix_sample=self.plan.matrix_sample,
                    run_make_test=os.environ.get("BENCH_MAKE_TEST") == "1",
                    results_dir=self.out,
                ),
            )
        results["machine"]["load_average_at_end"] = os.getloadavg()
        results["seconds"] = time.perf_counter() - began
        return results


def guarded(what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A failed phase becomes a 'skipped: reason' in every row it feeds, never a pass or a crash."""
    try:
        return measure()
    except Exception as error:  # copier, jinja, git and server failures alike: report, go on
        say(f"{what} failed: {error}")
        return {"skipped": f"{what} failed: {str(error).splitlines()[0]}", "error": str(error)}


def import_times(stderr: str) -> dict[str, float]:
    """Self import time (us) per top-level package from ``python -X importtime`` output."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if not self_us.isdigit():
            continue  # the header line
        package = name.split(".")[0]
        totals[package] = totals.get(package, 0.0) + float(self_us)
    return totals


def speedscope_stacks(path: Path) -> list[tuple[list[tuple[str, str]], float]]:
    data = json.loads(path.read_text())
    frames = [(frame.get("name", "?"), frame.get("file", "")) for frame in data["shared"]["frames"]]
    stacks = []
    for profile in data["profiles"]:
        for sample, weight in zip(profile.get("samples", []), profile.get("weights", []), strict=False):
            stacks.append(([frames[index] for index in sample], float(weight)))
    return stacks


def load_medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = (
        "rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "server_cpu_us_per_request",
        "server_cpu_utilisation",
        "generator_cpu_utilisation",
        "server_cpu_wait_share",
    )
    return {
        app: {key: median(float(r[app].get(key) or math.nan) for r in rounds) for key in keys}
        for app in APPS
        if rounds and app in rounds[0]
    }


def load_ratios(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Per-round ratios (the apps of one round ran back to back), then their median."""

    def per_round(key: str, top: str, bottom: str) -> float:
        return median(
            ratio(float(r[top].get(key) or math.nan), float(r[bottom].get(key) or math.nan)) for r in rounds
        )

    def cpu_delta(app: str) -> float:
        return median(
            float(r[app].get("server_cpu_us_per_request") or math.nan)
            - float(r["bare"].get("server_cpu_us_per_request") or math.nan)
            for r in rounds
        )

    return {
        "hardened_over_bare_rps": per_round("rps", "hardened", "bare"),
        # Capacity from CPU: bare CPU per request / hardened CPU per request (1.0 = free hardening).
        "hardened_over_bare_cpu": per_round("server_cpu_us_per_request", "bare", "hardened"),
        "hardened_over_library_rps": per_round("rps", "hardened", "library"),
        "hardened_over_library_cpu": per_round("server_cpu_us_per_request", "library", "hardened"),
        "hardened_cpu_us_over_bare": cpu_delta("hardened"),
        "hardened_p99_ms_over_bare": median(
            float(r["hardened"]["p99_ms"]) - float(r["bare"]["p99_ms"]) for r in rounds
        ),
    }


def percent(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{share * 100:.0f}%"


def micro_part(micro: dict[str, Any], part: str) -> dict[str, Any]:
    """One part of the micro results, or the phase's own skip reason when the whole phase failed."""
    if "skipped" in micro:
        return micro
    found: dict[str, Any] = micro[part]
    return found


def without_nan(value: Any) -> Any:
    """NaN (a missing number) as JSON null, so results.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(item) for item in value]
    return value


def hot_path_targets(load: dict[str, Any]) -> list[Target]:
    if "skipped" in load:
        reason = load["skipped"]
        names = (
            "throughput hardened/bare (req/s)",
            "throughput hardened/bare (server CPU)",
            "server CPU per request over bare",
            "throughput hardened/library stack",
            "p99 latency over bare",
        )
        return [Target(name, math.nan, 0, "at_least", "", skipped=reason, hot_path=True) for name in names]
    m, r = load["medians"], load["ratios"]
    return [
        Target(
            "throughput hardened/bare (req/s)",
            r["hardened_over_bare_rps"],
            0.85,
            "at_least",
            "x",
            f"hardened {format_value(m['hardened']['rps'], 'req/s')}, "
            f"bare {format_value(m['bare']['rps'], 'req/s')}",
            hot_path=True,
        ),
        Target(
            "throughput hardened/bare (server CPU)",
            r["hardened_over_bare_cpu"],
            0.85,
            "at_least",
            "x",
            f"bare / hardened server CPU per request: {m['bare']['server_cpu_us_per_request']:.0f} / "
            f"{m['hardened']['server_cpu_us_per_request']:.0f} us",
            hot_path=True,
        ),
        Target(
            "server CPU per request over bare",
            r["hardened_cpu_us_over_bare"],
            18.0,
            "at_most",
            "us",
            f"hardened {m['hardened']['server_cpu_us_per_request']:.1f} us - bare "
            f"{m['bare']['server_cpu_us_per_request']:.1f} us (utime+stime / requests)",
            hot_path=True,
            limit_text="bare + 18 us",
        ),
        Target(
            "throughput hardened/library stack",
            r["hardened_over_library_rps"],
            6.0,
            "at_least",
            "x",
            f"library stack {format_value(m['library']['rps'], 'req/s')}; by server CPU "
            f"{r['hardened_over_library_cpu']:.1f}x",
            hot_path=True,
        ),
        Target(
            "p99 latency over bare",
            r["hardened_p99_ms_over_bare"],
            1.0,
            "at_most",
            "ms",
            f"hardened p99 {m['hardened']['p99_ms']:.2f} ms, bare {m['bare']['p99_ms']:.2f} ms "
            f"({load['rounds'][0]['bare']['connections']} connections, closed loop)",
            hot_path=True,
            limit_text="bare + 1 ms",
        ),
    ]


def without_database(cold: dict[str, Any]) -> str:
    """The database=none variant's cold start and memory at start over bare's, where it was measured."""
    seconds, rss = cold.get("median_seconds", {}), cold.get("rss_idle_mb", {})
    if math.isnan(seconds.get("hardened_no_database", math.nan)):
        return ""
    start = (seconds["hardened_no_database"] - seconds["bare"]) * 1000
    memory = rss["hardened_no_database"] - rss["bare"]
    return f"cold start bare + {start:.0f} ms, RSS at start bare + {memory:.1f} MB"


def all_targets(results: dict[str, Any]) -> list[Target]:
    load = results["load"]
    targets = hot_path_targets(load)
    if "skipped" in load:
        targets.append(Target("RSS over bare", math.nan, 5.0, "at_most", "MB", skipped=load["skipped"]))
    else:
        rss = load["rss_after_load_mb"]
        targets.append(
            Target(
                "RSS over bare (after load)",
                rss["hardened"] - rss["bare"],
                5.0,
                "at_most",
                "MB",
                f"hardened {rss['hardened']:.1f} MiB, bare {rss['bare']:.1f} MiB (VmRSS)",
                limit_text="bare + 5 MB",
            )
        )
    cold = results["cold_start"]
    if "skipped" in cold:
        targets.append(Target("cold start over bare", math.nan, 50, "at_most", "ms", skipped=cold["skipped"]))
    else:
        seconds = cold["median_seconds"]
        no_database = without_database(cold)
        targets.append(
            Target(
                "cold start over bare",
                (seconds["hardened"] - seconds["bare"]) * 1000,
                50.0,
                "at_most",
                "ms",
                f"process start to first 200 on /health/live: hardened {seconds['hardened'] * 1000:.0f} ms, "
                f"bare {seconds['bare'] * 1000:.0f} ms"
                + (f"; with database=none: {no_database}" if no_database else ""),
                limit_text="bare + 50 ms",
            )
        )
    redis = micro_part(results["micro"], "redis")
    if "skipped" in redis:
        targets.append(
            Target("Redis rate-limit check / PING", math.nan, 1.2, "at_most", "x", skipped=redis["skipped"])
        )
    else:
        targets.append(
            Target(
                "Redis rate-limit check / PING",
                redis["check_us"] / redis["ping_us"],
                1.2,
                "at_most",
                "x",
                f"check {redis['check_us']:.0f} us, PING {redis['ping_us']:.0f} us; "
                f"{redis['round_trips_per_check']:g} Redis round trip(s) per check",
            )
        )
    template = results["template"]
    if "skipped" in template:
        targets.append(
            Target("render one project", math.nan, 1.0, "at_most", "s", skipped=template["skipped"])
        )
        targets.append(
            Target("`make test` ladder", math.nan, 30.0, "at_most", "min", skipped=template["skipped"])
        )
        targets.append(
            Target("`make demo` answers", math.nan, 60.0, "at_most", "s", skipped=template["skipped"])
        )
    else:
        one = template["render_one_git"]
        targets.append(
            Target(
                "render one project",
                one["median"],
                1.0,
                "at_most",
                "s",
                f"copier copy of the git working tree into a fresh folder, median of {len(one['samples'])}; "
                f"from a plain folder {template['render_one_plain']['median']:.2f} s",
            )
        )
        shown = template.get("demo", {"skipped": "not measured"})
        targets.append(
            Target(
                "`make demo` answers",
                shown.get("seconds", math.nan),
                60.0,
                "at_most",
                "s",
                shown.get("how", ""),
                skipped=shown.get("skipped"),
            )
        )
        make_test = template["make_test"]
        targets.append(
            Target(
                "`make test` ladder",
                make_test.get("seconds", math.nan) / 60,
                30.0,
                "at_most",
                "min",
                make_test.get("source", ""),
                skipped=make_test.get("skipped"),
            )
        )
    return targets


def detail_tables(results: dict[str, Any]) -> list[Table]:
    tables = []
    load, cold = results["load"], results["cold_start"]
    if "skipped" not in load:
        table = Table(
            "Servers (medians)",
            [
                "app",
                "req/s",
                "p50",
                "p99",
                "server CPU / request",
                "server CPU busy",
                "server waiting for a CPU",
                "generator CPU busy",
                "RSS after load",
                "cold start",
            ],
        )
        for app in APPS:
            m = load["medians"][app]
            start = cold.get("median_seconds", {}).get(app, math.nan) * 1000
            table.rows.append(
                [
                    app,
                    format_value(m["rps"], "req/s"),
                    format_value(m["p50_ms"], "ms"),
                    format_value(m["p99_ms"], "ms"),
                    format_value(m["server_cpu_us_per_request"], "us"),
                    percent(m["server_cpu_utilisation"]),
                    percent(m["server_cpu_wait_share"]),
                    percent(m["generator_cpu_utilisation"]),
                    format_value(load["rss_after_load_mb"][app], "MB"),
                    format_value(start, "ms"),
                ]
            )
        plan = results["plan"]
        table.note = (
            f"GET {INFO_PATH}, {plan['connections']} keep-alive connections, {plan['rounds']} interleaved "
            f"rounds of {plan['duration']:g}s, generator {results['machine']['load_generator']}; server "
            "pinned to CPU 0, generator to CPU 1. A server busy below ~95% was held back: by the generator "
            "when that is near 100%, by other work on the machine when the server waited for a CPU; either "
            "way, trust CPU per request over req/s. The hardened service logged as it ships: "
            f"{load.get('hardened_access_log_lines', 0):,} JSON access-log lines written."
        )
        if "hardened_dev_migrations" in cold.get("median_seconds", {}):
            table.note += (
                f" Cold start with the development default (alembic migrations at start-up): "
                f"{cold['median_seconds']['hardened_dev_migrations'] * 1000:.0f} ms."
            )
        if no_database := without_database(cold):
            table.note += (
                " The same service rendered with database=none (how much of the cold start and memory is "
                f"the database rather than the hardening): {no_database}."
            )
        tables.append(table)
    micro = results["micro"]
    rows = [
        (
            "ratelimit_check_memory",
            "core",
            "rate-limit check, memory (InboundLimiter.check, 2 client limits + 1 global)",
        ),
        ("breaker_call_success", "core", "circuit breaker, success path (over the bare call)"),
        ("retry_call_success", "core", "retry wrapper, success path (over the bare call)"),
        ("log_line_json", "core", "one structlog JSON log line (access-log fields)"),
        ("access_log_line", "core", "one access-log line, as the edge layer writes it"),
        ("metrics_per_request", "core", "metrics per request (in-progress gauge, counter, histogram)"),
        ("app_in_process", "core", "whole app in-process, hardened over bare (ASGI call, no server)"),
        ("routing_and_endpoint", "core", "routing, dependencies and endpoint, hardened over bare"),
    ]
    table = Table("Micro-costs (median, per call)", ["what", "cost", "notes"])
    table.note = (
        "Each middleware is its configured instance from the app's own stack, timed alone over a trivial "
        "app; together, with a real response flowing through every layer, they cost more than their sum "
        "(compare the whole-app row)."
    )
    for key, part, label in rows:
        data = micro_part(micro, part)
        if "skipped" in data:
            table.rows.append([label, "-", f"skipped: {data['skipped'].splitlines()[0]}"])
            continue
        item = data[key]
        note = (
            f"{item['total_us']:.1f} us with, {item['baseline_us']:.1f} us without"
            if "total_us" in item
            else ""
        )
        table.rows.append([label, format_value(item["us"], "us"), note])
        if key == "routing_and_endpoint":
            for name, layer in data["stack"].items():
                table.rows.append(
                    [
                        f"middleware {name.partition(':')[2]}",
                        format_value(layer["us"], "us"),
                        "alone, over a trivial app",
                    ]
                )
    redis = micro_part(micro, "redis")
    if "skipped" in redis:
        table.rows.append(["rate-limit check, Redis", "-", f"skipped: {redis['skipped'].splitlines()[0]}"])
    else:
        table.rows.append(
            [
                "rate-limit check, Redis (moving window)",
                format_value(redis["check_us"], "us"),
                f"{redis['round_trips_per_check']:g} round trip(s); {redis['redis_url']}",
            ]
        )
        table.rows.append(
            ["Redis PING (same client)", format_value(redis["ping_us"], "us"), "one round trip"]
        )
    tables.append(table)
    template = results["template"]
    if "skipped" not in template:
        table = Table("Template", ["what", "seconds", "how"])
        table.rows.append(
            [
                "render one project",
                format_value(template["render_one_git"]["median"], "s"),
                "copier copy from the git working tree (vcs_ref HEAD), median",
            ]
        )
        table.rows.append(
            [
                "render one project (plain folder)",
                format_value(template["render_one_plain"]["median"], "s"),
                "as the test suite renders: copier.yml + template/ copied, no git",
            ]
        )
        matrix = template["matrix"]
        if matrix["measured_full"]:
            how = f"all {matrix['of']} variants measured, pool of {matrix['workers']}"
        else:
            how = (
                f"ESTIMATED from {matrix['variants']} evenly spread variants "
                f"({matrix['wall_seconds']:.1f} s wall, pool of {matrix['workers']}); "
                "BENCH_FULL_MATRIX=1 measures all"
            )
        table.rows.append(
            [f"render the matrix ({matrix['of']})", format_value(matrix["full_matrix_seconds"], "s"), how]
        )
        update = template["update"]
        if "skipped" in update:
            table.rows.append(["copier update", "-", f"skipped: {update['skipped']}"])
        else:
            table.rows.append(
                [
                    "copier update",
                    format_value(update["seconds"], "s"),
                    f"CLI, from {update['from']} to {update['to']}",
                ]
            )
        tables.append(table)
    return tables


def render_report(results: dict[str, Any], targets: list[Target]) -> str:
    machine = results["machine"]
    parts = [
        "## make bench",
        "",
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), Python {machine['python']}, template "
        f"{machine['template']}, fastapi {machine['pins'].get('fastapi')}, "
        f"uvicorn {machine['pins'].get('uvicorn')}; "
        f"load average {machine['load_average_at_start'][0]:.2f} at start, "
        f"{machine['load_average_at_end'][0]:.2f} at end; {results['seconds']:.0f} s in all.",
        "",
        targets_table(targets).markdown(),
    ]
    load = results["load"]
    if "medians" in load:
        waited = max(load["medians"][app]["server_cpu_wait_share"] for app in APPS)
        if waited > 0.10:
            parts += [
                "",
                f"Warning: a server waited for a CPU {waited * 100:.0f}% of a measured window (other work "
                "on this machine): req/s and latencies are depressed and noisy; CPU per request and the "
                "ratios of interleaved rounds hold up best.",
            ]
    short = [target for target in targets if target.skipped is None and not target.passed]
    if short:
        parts += ["", "Short: " + "; ".join(f"{target.name} {target.verdict}" for target in short) + "."]
    profile = results["load"].get("profile") if isinstance(results["load"], dict) else None
    if profile:
        if "skipped" in profile:
            parts += ["", f"Hot-path profile: skipped: {profile['skipped']}"]
        else:
            parts += [
                "",
                f"Hot-path profile (py-spy, hardened server under load): {profile['speedscope']} "
                f"(open in speedscope.app), summary {profile['summary_file']}:",
                "",
                "```",
                profile["summary"],
                "```",
            ]
    imports = results.get("import_profile")
    if imports:
        if "skipped" in imports:
            parts += ["", f"Import profile: skipped: {imports['skipped']}"]
        else:
            parts += [
                "",
                f"Start-up and memory go mostly to imports ({imports['file']}):",
                "",
                "```",
                imports["summary"],
                "```",
            ]
    template = results["template"]
    render_profile = template.get("render_profile") if isinstance(template, dict) else None
    if render_profile:
        buckets = ", ".join(
            f"{label} {render_profile[label]['seconds']:.2f} s ({render_profile[label]['calls']} calls)"
            for label in ("jinja compile", "git commands")
            if label in render_profile
        )
        parts += ["", f"Render profile (cProfile of one render): {render_profile['file']}; {buckets}."]
    for table in detail_tables(results):
        parts += ["", table.markdown()]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench-python", required=True, help="python of the bench venv (build/bench/venv)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    parser.add_argument(
        "--template-ref",
        default=os.environ.get("BENCH_TEMPLATE_REF") or None,
        help="bench the service as committed at this git ref (default: the working tree)",
    )
    parser.add_argument("--skip-template", action="store_true", help="skip the template timings")
    args = parser.parse_args()
    plan = Plan.make(args.quick, os.environ.get("BENCH_FULL_MATRIX") == "1")
    bench = Bench(args, plan)
    results = bench.run()
    targets = all_targets(results)
    if any(not target.passed and target.name.startswith(("cold start", "RSS")) for target in targets):
        results["import_profile"] = guarded("import profile", bench.import_profile)
    results["targets"] = [target.as_json() for target in targets]
    (bench.out / "results.json").write_text(json.dumps(without_nan(results), indent=1, default=str) + "\n")
    sys.stdout.write(render_report(results, targets))
    print(f"\nresults: {bench.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
