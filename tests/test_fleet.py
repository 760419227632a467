"""The fleet level: several replicas of the postgres+redis service behind a real load balancer.

Three replicas run as real processes on loopback ports, installed once from the shipped lock, behind
HAProxy (Debian's package, `make haproxy`) health-checking /health/ready the way a Kubernetes Service
follows readiness, sharing one PostgreSQL database and one Redis. The timing of a rollout (surge,
preStop pause, termination grace, readiness probe period and threshold, shutdown timeout) is read from
the project's own rendered manifests, so the fleet is run the way the Deployment declares it.

- Migrations once: the replicas start at once against a fresh database and migrate it at start-up.
- Limits are fleet-wide: one client's per-client limit holds exactly across the replicas, and the
  outbound throttle lets the fleet make the upstream's N calls per window, not N per replica.
- Rolling restart under steady mixed load: every replica replaced one by one (start the new one, wait
  until the balancer sees it ready, take the old one out, pause as preStop does, SIGTERM it): requests
  sent, failed (5xx, or no answer), acknowledged writes lost, p99 before and during the rollout.

Needs HAProxy, PostgreSQL (DATABASE_URL, default the machine's `test` database; the level creates and
drops a scratch database of its own) and Redis (REDIS_URL, default db 15): without them the tests skip
with the reason, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from rendering import record, render, work_dir
from variants import REPO_ROOT

pytestmark = pytest.mark.fleet

FLEET_VARIANT = {"database": "postgres", "redis": True, "kubernetes": True, "auth": "none"}
REPLICAS = 3
LOAD_CONNECTIONS = 50
# Load before the rollout: a warm-up (connection pools fill, first requests compile), then the baseline.
WARMUP_SECONDS = 5.0
BASELINE_SECONDS = 5.0
# Generous: imports and migrations on a loaded 2-core machine took 11 s; waits end as soon as it is ready.
READY_SECONDS = 60.0
COMMAND_TIMEOUT = 600
POSTGRES_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
LOAD_SCRIPT = Path(__file__).with_name("fleet_load.py")
# Documentation addresses (RFC 5737): clients behind the balancer, told apart by X-Forwarded-For.
LIMITED_CLIENT = "198.51.100.7"
QUOTE_CLIENT = "198.51.100.8"


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the fleet level must run, not skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "MAKEFLAGS", "MFLAGS")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("APP_", "PYTEST_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(overrides)
    return env


def package_of(project: Path) -> str:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return str(answers["package_name"])


def psql(url: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1", url],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"psql failed: {result.stderr}"
    return result.stdout.strip()


# --- what the manifests declare ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """The Deployment's rollout and probe timing, as rendered (deploy/k8s/base)."""

    max_surge: int
    max_unavailable: int
    prestop_pause: float
    termination_grace: float
    shutdown_timeout: float
    probe_period: float
    probe_timeout: float
    probe_failures: int

    @classmethod
    def read(cls, project: Path) -> Rollout:
        base = project / "deploy" / "k8s" / "base"
        (deployment,) = [
            document
            for document in yaml.safe_load_all((base / "deployment.yaml").read_text(encoding="utf-8"))
            if document and document.get("kind") == "Deployment"
        ]
        pod = deployment["spec"]["template"]["spec"]
        (server,) = [container for container in pod["containers"] if "readinessProbe" in container]
        pause = server["lifecycle"]["preStop"]["exec"]["command"]
        assert pause[0] == "sleep", f"preStop runs {pause}, the fleet test expects a pause"
        config = dict(
            line.split("=", 1)
            for line in (base / "config.env").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")
        )
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        probe = server["readinessProbe"]
        return cls(
            max_surge=int(rolling["maxSurge"]),
            max_unavailable=int(rolling["maxUnavailable"]),
            prestop_pause=float(pause[1]),
            termination_grace=float(pod["terminationGracePeriodSeconds"]),
            shutdown_timeout=float(config["APP_SHUTDOWN_TIMEOUT_SECONDS"]),
            probe_period=float(probe["periodSeconds"]),
            probe_timeout=float(probe["timeoutSeconds"]),
            probe_failures=int(probe["failureThreshold"]),
        )


# --- the pieces: replicas, the balancer, an upstream ------------------------------------------------------


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, project: Path, env: dict[str, str], logs: Path) -> None:
        with (logs / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(project / ".venv" / "bin" / "python"), "-m", package_of(project)],
                cwd=project,
                env={**env, "APP_HOST": "127.0.0.1", "APP_PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while get(f"http://127.0.0.1:{self.port}/health/ready") != 200:
            assert self.process is not None
            assert self.process.poll() is None, f"{self.name} exited {self.process.returncode}"
            assert time.monotonic() < deadline, f"{self.name} was not ready after {READY_SECONDS}s"
            time.sleep(0.2)

    def stop(self, grace: float) -> str:
        """SIGTERM, then SIGKILL after ``grace`` seconds, as the kubelet does; how it ended."""
        assert self.process is not None
        if self.process.poll() is not None:
            return f"already exited {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        try:
            return f"exited {self.process.wait(timeout=grace)}"
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return "killed after the grace period"


class Balancer:
    """HAProxy in the foreground with its runtime API on a socket: servers go in and out like endpoints."""

    def __init__(self, folder: Path, replicas: list[Replica], active: int, rollout: Rollout) -> None:
        self.port = free_port()
        self.socket = folder / "haproxy.sock"
        servers = "\n".join(
            f"  server {replica.name} 127.0.0.1:{replica.port}{'' if index < active else ' disabled'}"
            for index, replica in enumerate(replicas)
        )
        # retries 0: a Kubernetes Service does not resend a request either, so no failure is hidden.
        config = f"""global
  maxconn 2000
  stats socket {self.socket} mode 600 level admin
defaults
  mode http
  retries 0
  option forwardfor
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check {rollout.probe_timeout:g}s
frontend fleet
  bind 127.0.0.1:{self.port}
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /health/ready
  http-check expect status 200
  default-server check inter {rollout.probe_period:g}s fall {rollout.probe_failures} rise 1
{servers}
"""
        path = folder / "haproxy.cfg"
        path.write_text(config, encoding="utf-8")
        self.log = (folder / "haproxy.log").open("ab")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=self.log, stderr=self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, line: str) -> str:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(str(self.socket))
                    sock.sendall(line.encode() + b"\n")
                    chunks = []
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
                    return b"".join(chunks).decode()
            except (FileNotFoundError, ConnectionRefusedError):
                assert time.monotonic() < deadline, "HAProxy's runtime API did not come up"
                time.sleep(0.1)

    def servers(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: status (UP, DOWN, MAINT), stot (sessions so far), ..."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            row["svname"]: row
            for row in rows
            if row.get("pxname") == "replicas" and row["svname"] not in {"FRONTEND", "BACKEND"}
        }

    def wait_until_up(self, replica: Replica) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while (current := self.servers()[replica.name]["status"]) != "UP":
            assert replica.process is not None
            assert replica.process.poll() is None, f"{replica.name} exited {replica.process.returncode}"
            assert time.monotonic() < deadline, f"{replica.name} is {current}, not UP, after {READY_SECONDS}s"
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Fleet:
    project: Path
    folder: Path
    env: dict[str, str]
    rollout: Rollout
    replicas: list[Replica] = field(default_factory=list)
    balancer: Balancer | None = None

    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url


@contextmanager
def running_fleet(project: Path, folder: Path, env: dict[str, str], spares: int = 0) -> Iterator[Fleet]:
    """``REPLICAS`` replicas started at once (plus ``spares`` slots the balancer knows but keeps out)."""
    rollout = Rollout.read(project)
    fleet = Fleet(project, folder, env, rollout)
    fleet.replicas = [Replica(f"r{number}", free_port()) for number in range(REPLICAS + spares)]
    try:
        for replica in fleet.replicas[:REPLICAS]:
            replica.start(project, env, folder)
        fleet.balancer = Balancer(folder, fleet.replicas, REPLICAS, rollout)
        for replica in fleet.replicas[:REPLICAS]:
            fleet.balancer.wait_until_up(replica)
        yield fleet
    finally:
        for replica in fleet.replicas:
            if replica.process is not None:
                replica.stop(grace=rollout.termination_grace)
        if fleet.balancer is not None:
            fleet.balancer.close()


class CountingUpstream:
    """A stand-in for the example upstream: answers /quote and counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    outer.calls += 1
                body = b'{"text": "fleet"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(url: str, client: str = "") -> int:
    """The status ``url`` answers (0: no answer), for ``client`` behind the balancer when given."""
    request = urllib.request.Request(url, headers={"X-Forwarded-For": client} if client else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine() -> None:
    """HAProxy, PostgreSQL and Redis, or a skip (a failure under CI=true) naming what is missing."""
    subprocess.run(
        ["make", "--no-print-directory", "haproxy"], cwd=REPO_ROOT, check=False, timeout=COMMAND_TIMEOUT
    )
    if shutil.which("haproxy") is None:
        unavailable("no haproxy on PATH (`make haproxy` installs Debian's package)")
    if shutil.which("psql") is None:
        unavailable("no psql on PATH (the PostgreSQL client tools count the rows)")
    try:
        psql(POSTGRES_URL, "SELECT 1")
    except AssertionError as error:
        unavailable(f"no PostgreSQL at {POSTGRES_URL} ({error}); set DATABASE_URL")
    host, _, port = REDIS_URL.split("/")[2].partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(16).startswith(b"+PONG")
    except (OSError, AssertionError) as error:
        unavailable(f"no Redis at {REDIS_URL} ({error!r}); set REDIS_URL")


def installed(answers: dict[str, Any], destination: Path) -> Path:
    """``answers`` rendered into ``destination`` and installed from the shipped lock (`make install`)."""
    shutil.copytree(render(answers), destination)
    dev_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["make", "--no-print-directory", "install"],
        cwd=destination,
        env=clean_env(PATH=f"{dev_bin}{os.pathsep}{os.environ['PATH']}"),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"make install failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return destination


@pytest.fixture(scope="module")
def project(machine: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The postgres+redis service, installed once for the module."""
    return installed(FLEET_VARIANT, tmp_path_factory.mktemp("fleet") / "project")


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh database for one fleet, dropped afterwards (the shared one is never touched)."""
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    psql(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    yield f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    psql(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fleet_env(database_url: str, **settings: str) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        APP_ENVIRONMENT="development",
        APP_LOG_FORMAT="json",
        # The replicas start together against a fresh database: the migration lock makes one migrate.
        APP_DB_MIGRATE_ON_STARTUP="true",
        # A Redis namespace of its own, so no earlier run's counters are seen.
        APP_SERVICE_NAME=f"fleet-{uuid.uuid4().hex[:12]}",
        **settings,
    )


# --- the tests ---------------------------------------------------------------------------------------------


def test_limits_hold_for_the_whole_fleet(project: Path, database_url: str, tmp_path: Path) -> None:
    per_client, upstream_limit = 30, 6
    upstream = CountingUpstream()
    env = fleet_env(
        database_url,
        APP_RATE_LIMIT_PER_CLIENT=f"{per_client}/minute",
        APP_RATE_LIMIT_GLOBAL="100000/minute",
        APP_UPSTREAM_URL=upstream.url,
        APP_UPSTREAM_RATE_LIMIT=f"{upstream_limit}/minute",
        APP_UPSTREAM_MAX_WAIT_SECONDS="1",
    )
    try:
        with running_fleet(project, tmp_path, env) as fleet:
            assert fleet.balancer is not None
            assert psql(database_url, "SELECT count(*) FROM alembic_version") == "1"
            sessions_before = {name: int(row["stot"]) for name, row in fleet.balancer.servers().items()}
            statuses = [get(f"{fleet.url()}/api/v1/info", LIMITED_CLIENT) for _ in range(3 * per_client)]
            served = {
                name: int(row["stot"]) - sessions_before[name]
                for name, row in fleet.balancer.servers().items()
            }
            assert statuses.count(200) == per_client, f"admitted {statuses.count(200)} of {per_client}"
            assert statuses.count(429) == 2 * per_client, statuses
            assert sum(count > 0 for count in served.values()) == REPLICAS, f"requests per replica: {served}"

            with ThreadPoolExecutor(max_workers=3 * upstream_limit) as pool:
                quotes = list(
                    pool.map(
                        lambda _: get(f"{fleet.url()}/api/v1/quote", QUOTE_CLIENT), range(3 * upstream_limit)
                    )
                )
            assert upstream.calls == upstream_limit, (
                f"the upstream got {upstream.calls} calls, its limit is {upstream_limit} for the fleet "
                f"(answers: {sorted(quotes)})"
            )
    finally:
        upstream.close()
    record("fleet", "limits")


def test_rolling_restart_under_load_fails_no_request_and_loses_no_write(
    project: Path, database_url: str, tmp_path: Path
) -> None:
    env = fleet_env(
        database_url, APP_RATE_LIMIT_PER_CLIENT="1000000/minute", APP_RATE_LIMIT_GLOBAL="1000000/minute"
    )
    control = tmp_path / "control"
    control.mkdir()
    results = tmp_path / "load.json"
    steps: list[str] = []
    with running_fleet(project, tmp_path, env, spares=REPLICAS) as fleet:
        balancer = fleet.balancer
        assert balancer is not None
        rollout = fleet.rollout
        assert (rollout.max_surge, rollout.max_unavailable) == (1, 0), "the test replaces one pod at a time"
        load = subprocess.Popen(
            [
                str(project / ".venv" / "bin" / "python"),
                str(LOAD_SCRIPT),
                f"--url={fleet.url()}",
                f"--connections={LOAD_CONNECTIONS}",
                f"--control={control}",
                f"--out={results}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + READY_SECONDS
            while not (control / "started").exists():
                assert load.poll() is None and time.monotonic() < deadline, "the load generator did not start"
                time.sleep(0.1)
            time.sleep(WARMUP_SECONDS)
            (control / "phase").write_text("before")
            time.sleep(BASELINE_SECONDS)
            (control / "phase").write_text("during")
            started = time.monotonic()
            for old, new in zip(fleet.replicas[:REPLICAS], fleet.replicas[REPLICAS:], strict=True):
                # maxSurge 1, maxUnavailable 0: the new pod first, ready, then the old one goes.
                new.start(project, env, tmp_path)
                # A pod joins the endpoints once its readiness probe passes (HAProxy would route at once).
                new.wait_until_ready()
                balancer.command(f"enable server replicas/{new.name}")
                balancer.wait_until_up(new)
                # Terminating: the pod leaves the endpoints while preStop pauses, then gets SIGTERM.
                balancer.command(f"disable server replicas/{old.name}")
                time.sleep(rollout.prestop_pause)
                steps.append(
                    f"{old.name}: {old.stop(grace=rollout.termination_grace - rollout.prestop_pause)}"
                )
            rollout_seconds = time.monotonic() - started
            (control / "phase").write_text("after")
            time.sleep(1)
        finally:
            (control / "stop").touch()
            try:
                output, _ = load.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                load.kill()
                output, _ = load.communicate()
        assert load.returncode == 0, f"the load generator failed:\n{output.decode()[-3000:]}"

    report = json.loads(results.read_text())
    phases = report["phases"]
    measured = [phases[name] for name in ("before", "during", "after")]
    sent = sum(phase["sent"] for phase in measured)
    failed = sum(phase.get("status_5xx", 0) + phase.get("no_answer", 0) for phase in measured)
    unexpected = sum(phase.get("status_4xx", 0) for phase in measured)
    warmup = phases.get("warmup", {})
    warmup_failed = warmup.get("status_5xx", 0) + warmup.get("no_answer", 0)
    acknowledged = report["acknowledged"]
    ids = ",".join(str(item) for item in acknowledged)
    kept = int(psql(database_url, f"SELECT count(*) FROM items WHERE id IN ({ids})")) if ids else 0
    summary = (
        f"rolling restart of {REPLICAS} replicas in {rollout_seconds:.0f}s, {LOAD_CONNECTIONS} connections: "
        f"{sent} requests sent after a warm-up of {warmup.get('sent', 0)} ({warmup_failed} failed), "
        f"{failed} failed (5xx or no answer), {unexpected} other 4xx, "
        f"{len(acknowledged) - kept} of {len(acknowledged)} acknowledged writes lost; "
        f"p99 before {phases['before']['p99_ms']} ms, during {phases['during']['p99_ms']} ms; "
        f"replicas {steps}; examples {report['examples'][:5]}"
    )
    print(summary)
    (work_dir() / "fleet-rollout.txt").write_text(summary + "\n" + json.dumps(phases, indent=1))
    assert kept == len(acknowledged), summary
    assert failed == 0, summary
    assert unexpected == 0, summary
    record("fleet", "rolling restart")


def test_memory_limits_admit_up_to_the_replica_count_times_the_limit(
    machine: None, database_url: str, tmp_path: Path
) -> None:
    """Without Redis each replica counts on its own: the factor the docs state, measured."""
    per_client = 30
    project = installed({**FLEET_VARIANT, "redis": False}, tmp_path / "project")
    env = fleet_env(database_url, APP_RATE_LIMIT_PER_CLIENT=f"{per_client}/minute")
    with running_fleet(project, tmp_path, env) as fleet:
        # More than the replicas could admit together, so the count shows the bound, not the requests sent.
        statuses = [
            get(f"{fleet.url()}/api/v1/info", LIMITED_CLIENT) for _ in range((REPLICAS + 1) * per_client)
        ]
    admitted = statuses.count(200)
    print(f"memory storage, {REPLICAS} replicas: admitted {admitted} of a {per_client} limit")
    # Round robin spreads the client evenly, so each replica admits its own full limit.
    assert admitted == REPLICAS * per_client, f"admitted {admitted}, expected {REPLICAS} x {per_client}"
    record("fleet", "memory limits")
