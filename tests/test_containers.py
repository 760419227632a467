"""Level 7 of the test ladder: every distinct generated image is built, run, checked and stopped.

The Dockerfile differs only by Python version and database (level 3 counts the distinct ones across all
864 variants; a test here proves that grouping still holds), so one image per pair is built with podman,
daemonless, from the base images `scripts/container_bases.py` makes locally (`make container-bases`; no
registry is needed). Each image is run as the Kubernetes manifests run it: their UID, read-only root,
their emptyDir as tmpfs and their volumes, no capabilities, no privilege escalation, their ConfigMap and a
test Secret. Checked: non-root, the three probes, the image's HEALTHCHECK (`podman healthcheck run`, as
there is no systemd to schedule it), SIGTERM exits 0 within the grace period, the init container's
migrations, backup.sh and verify-backup.sh as the backup CronJob runs them (SQLite on a volume,
PostgreSQL on this machine's server over host networking), and the size of the layer a code change ships.

What it does not prove: the real base image's contents and vulnerabilities (the stand-in base is Debian
trixie minbase plus a local CPython), nor a registry push.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artifact_checks import artifacts
from container_checks import (
    BASES_SCRIPT,
    BUILD_TIMEOUT,
    Ledger,
    config_env,
    free_port,
    hardening,
    http_get,
    image_layers,
    ledger,
    podman,
    podman_env,
    secret_names,
    unavailable,
    unique_name,
    wait_until_live,
)
from rendering import fingerprint, note, record, render
from variants import DEFAULT_VARIANT, OPTIONS, variant_id

pytestmark = [pytest.mark.containers, pytest.mark.xdist_group("containers")]

PAIRS = [(python, database) for python in OPTIONS["python_version"] for database in OPTIONS["database"]]
POSTGRES_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
# A code change must ship one layer this small (the service's own files and bytecode; ~0.4 MB here), never
# the dependencies again (~78 MB).
CHANGE_LAYER_LIMIT = 2 * 1024 * 1024


def representative(python: str, database: str) -> dict[str, Any]:
    """The variant built for this Dockerfile: Kubernetes manifests to take the hardening from; Redis where
    PostgreSQL is, so readiness checks both servers of this machine."""
    return {
        **DEFAULT_VARIANT,
        "python_version": python,
        "database": database,
        "redis": database == "postgres",
        "kubernetes": True,
    }


@pytest.fixture(scope="session")
def base_images() -> None:
    """podman and the local base images (made once, reused while what made them is unchanged)."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed (`sudo make container-tools`)")
    made = subprocess.run(
        [sys.executable, str(BASES_SCRIPT)], env=podman_env(), capture_output=True, text=True, check=False
    )
    if made.returncode == 3:
        unavailable(made.stderr.strip().splitlines()[-1])
    assert made.returncode == 0, f"scripts/container_bases.py failed:\n{made.stdout}\n{made.stderr}"


_built: dict[str, str] = {}


def build(project: Path, tag: str, book: Ledger | None = None) -> str:
    assert (project / "uv.lock").is_file(), (
        f"{project.name} has no uv.lock: a generated project must ship its lock file, or its image "
        "cannot be built as generated (COPY pyproject.toml uv.lock)"
    )
    started = time.monotonic()
    podman(
        "build", "--pull=never", "--format", "docker", "--build-arg", "BUILD_COMMIT=level7",
        "--tag", tag, str(project), timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    if book is not None:
        book.images.append(tag)
    return f"{time.monotonic() - started:.0f} s"


@pytest.fixture(scope="session")
def images(base_images: None) -> Iterator[dict[str, str]]:
    """variant id -> image tag, built on first use; removed at the end of the session, with the builder
    stages' images the session left untagged (the base images stay)."""
    before = set(dangling_images())
    yield _built
    for tag in _built.values():
        podman("rmi", "--force", tag, check=False)
    for image in set(dangling_images()) - before:
        podman("rmi", image, check=False)


def dangling_images() -> list[str]:
    return podman("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split()


def image_for(images: dict[str, str], answers: dict[str, Any]) -> tuple[Path, str]:
    project = render(answers)
    name = variant_id(answers)
    if name not in images:
        python = answers["python_version"]
        base = f"docker.io/library/python:{python}-slim-trixie"
        if podman("image", "exists", base, check=False).returncode != 0:
            unavailable(f"no base image {base}: scripts/container_bases.py found no CPython {python}")
        tag = f"localhost/rampart-l7/{name}:{fingerprint()[:12]}"
        took = build(project, tag)
        images[name] = tag
        size = podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
        record("images_built", name)
        note("images", name, f"image {name}: {int(size) / 1e6:.0f} MB, built in {took}")
    return project, images[name]


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A database of its own on this machine's server, dropped afterwards."""
    if shutil.which("psql") is None:
        unavailable("psql is not on PATH (the PostgreSQL client tools)")
    probe = subprocess.run(["psql", POSTGRES_URL, "-Atc", "SELECT 1"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is not reachable: {probe.stderr.strip()}")
    name = unique_name("db").replace("-", "_")
    subprocess.run(["psql", POSTGRES_URL, "-qc", f"CREATE DATABASE {name}"], check=True)
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        subprocess.run(
            ["psql", POSTGRES_URL, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True
        )


def test_one_image_per_python_and_database_covers_every_distinct_dockerfile() -> None:
    built = {render(representative(*pair)).joinpath("Dockerfile").read_bytes() for pair in PAIRS}
    distinct = {item.path.read_bytes(): item for item in artifacts("dockerfile")}
    missing = [variant_id(item.answers) for content, item in distinct.items() if content not in built]
    assert not missing, f"Dockerfiles no image of level 7 is built from (group them in PAIRS): {missing}"
    assert len(built) == len(distinct) == len(PAIRS)


@pytest.mark.parametrize(("python", "database"), PAIRS, ids=[f"py{p.replace('.', '')}-{d}" for p, d in PAIRS])
def test_image_runs_as_the_manifests_declare(
    images: dict[str, str], python: str, database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    answers = representative(python, database)
    project, image = image_for(images, answers)
    api_key = secrets.token_hex(16)
    test_secret = {
        "APP_API_KEYS": f"level7:{hashlib.sha256(api_key.encode()).hexdigest()}",
        "REDIS_URL": REDIS_URL,
    }
    network: list[str] = []
    port = free_port()
    settings = config_env(project)
    if database == "postgres":
        test_secret["DATABASE_URL"] = request.getfixturevalue("postgres_database")
        # The machine's servers are on the host's loopback; the service then listens on the host itself.
        network = ["--network", "host"]
        settings["APP_PORT"] = str(port)
        published = []
    else:
        published = ["--publish", f"127.0.0.1:{port}:{settings['APP_PORT']}"]
    unknown = [name for name in secret_names(project) if name not in test_secret]
    assert not unknown, f"the Secret names settings the test has no value for: {unknown}"
    env_file = tmp_path / "pod.env"
    env = {**settings, **{name: test_secret[name] for name in secret_names(project)}}
    env_file.write_text("".join(f"{name}={value}\n" for name, value in env.items()), encoding="utf-8")
    base_url = f"http://127.0.0.1:{port}"

    with ledger() as book:
        app = hardening(project, "Deployment", "app")
        volumes = {name: book.volume() for name, _ in app.volumes}
        common = ["--env-file", str(env_file), *network]

        if database != "none":
            migrate = hardening(project, "Deployment", "migrate", init=True)
            assert migrate.command is not None
            name = unique_name("migrate")
            book.containers.append(name)
            podman("run", "--name", name, *migrate.flags(volumes), *common, image, *migrate.command)
            name = unique_name("revision")
            book.containers.append(name)
            current = podman("run", "--name", name, *migrate.flags(volumes), *common, image,
                             "python", "-m", "alembic", "current")  # fmt: skip
            assert "(head)" in current.stdout, f"the init container left the schema at {current.stdout!r}"

        name = unique_name("app")
        book.containers.append(name)
        podman("run", "--detach", "--name", name, *app.flags(volumes), *common, *published, image)
        wait_until_live(base_url, name)
        for probe in ("live", "ready", "startup"):
            status, body = http_get(f"{base_url}/health/{probe}")
            assert status == 200, f"/health/{probe}: {status} {body[:500]!r}"
        assert podman("exec", name, "id", "-u").stdout.strip() == app.user.split(":")[0]
        assert podman("exec", name, "touch", "/app/written", check=False).returncode != 0, "root is writable"
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout} {health.stderr}"
        if database != "none":
            headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
            for item in ("anvil", "bellows", "crucible"):
                status, body = http_get(f"{base_url}/api/v1/items", headers, f'{{"name": "{item}"}}'.encode())
                assert status == 201, f"POST /api/v1/items: {status} {body[:500]!r}"

        started = time.monotonic()
        podman("kill", "--signal", "TERM", name)
        grace = app.grace_seconds or 30
        exit_code = podman("wait", name, timeout=grace + 30).stdout.strip()
        stopped_after = time.monotonic() - started
        assert exit_code == "0", f"exit {exit_code} after SIGTERM\n{podman('logs', name).stderr[-3000:]}"
        assert stopped_after < grace, f"SIGTERM took {stopped_after:.0f} s, the grace period is {grace} s"

        if database != "none":
            backup = hardening(project, "CronJob", "backup")
            assert backup.command == ("/app/scripts/backup.sh",)
            volumes.update({name: book.volume() for name, _ in backup.volumes if name not in volumes})
            job = [*backup.flags(volumes), *common, "--env", "BACKUP_DIR=/app/backups", image]
            name = unique_name("backup")
            book.containers.append(name)
            made = podman("run", "--name", name, *job, *backup.command)
            written = made.stdout.strip().splitlines()[-1]
            assert written.startswith("/app/backups/"), f"backup.sh printed {made.stdout!r}"
            name = unique_name("verify")
            book.containers.append(name)
            verified = podman("run", "--name", name, *job, "/app/scripts/verify-backup.sh", written)
            assert "row counts match the manifest" in verified.stderr, verified.stderr
            name = unique_name("manifest")
            book.containers.append(name)
            manifest = json.loads(
                podman("run", "--name", name, *job, "cat", f"{written}.manifest.json").stdout
            )
            # SQLite names tables bare, PostgreSQL with their schema.
            rows = {table.rsplit(".", 1)[-1]: count for table, count in manifest["tables"].items()}
            assert rows.get("items") == 3, f"the backup does not hold the 3 items: {manifest}"
        record("containers_run", variant_id(answers))


def test_a_code_change_ships_one_small_layer(images: dict[str, str], tmp_path: Path) -> None:
    answers = representative(DEFAULT_VARIANT["python_version"], "sqlite")
    project, image = image_for(images, answers)
    changed = shutil.copytree(project, tmp_path / "project", symlinks=True)
    app_module = next(changed.glob("src/*/app.py"))
    app_module.write_text(app_module.read_text(encoding="utf-8") + "# a one-line change\n", encoding="utf-8")
    with ledger() as book:
        tag = f"localhost/rampart-l7/changed:{os.getpid()}"
        took = build(changed, tag, book)
        before = dict(image_layers(image))
        new_layers = [(layer, size) for layer, size in image_layers(tag) if layer not in before]
    assert len(new_layers) == 1, f"a one-line change made {len(new_layers)} new layers: {new_layers}"
    size = new_layers[0][1]
    assert size < CHANGE_LAYER_LIMIT, f"a one-line change ships a layer of {size / 1e6:.1f} MB"
    note(
        "images",
        "change",
        f"a one-line code change ships one layer of {size / 1e3:.0f} kB (rebuilt in {took})",
    )


# Profiles whose services need only the service's own image; postgres and redis images cannot be pulled
# here, so those variants' compose files are checked statically (level 3's `docker-compose config`).
COMPOSE_RUNS = {"sqlite": ["development", "production", "backup"], "none": ["development", "production"]}


@pytest.mark.parametrize("database", sorted(COMPOSE_RUNS))
def test_compose_profiles_run_through_podmans_docker_api(
    images: dict[str, str], database: str, tmp_path: Path
) -> None:
    project, image = image_for(images, representative(DEFAULT_VARIANT["python_version"], database))
    api_key = secrets.token_hex(16)
    ports = {"app": free_port(), "app-production": free_port()}
    # Only the published ports change: the generated file's fixed ones may be taken on a shared machine.
    override = tmp_path / "compose.ports.yaml"
    override.write_text(
        "services:\n"
        + "".join(
            f'  {name}:\n    ports: !override ["127.0.0.1:{port}:8000"]\n' for name, port in ports.items()
        ),
        encoding="utf-8",
    )
    compose_project = unique_name("compose")
    socket_path = tmp_path / "podman.sock"
    repository, tag = image.rsplit(":", 1)
    env = {
        **podman_env(),
        "DOCKER_HOST": f"unix://{socket_path}",
        "IMAGE_NAME": repository,
        "IMAGE_TAG": tag,
        "APP_API_KEYS": f"level7:{hashlib.sha256(api_key.encode()).hexdigest()}",
    }
    base = [str(Path(sys.executable).parent / "docker-compose"), "--project-name", compose_project]
    base += ["--file", str(project / "compose.yaml"), "--file", str(override)]

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*base, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"docker-compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def running() -> set[str]:
        listed = compose("ps", "--format", "{{.Service}}").stdout.split()
        return set(listed)

    with ledger() as book:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
            env=podman_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        book.processes.append(service)
        book.paths.append(socket_path)
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert socket_path.exists(), "podman system service did not open its socket"
        try:
            for profile in COMPOSE_RUNS[database]:
                if profile == "backup":
                    made = compose("--profile", "backup", "run", "--rm", "backup")
                    assert "/app/backups/" in made.stdout, (
                        f"the backup profile wrote no backup: {made.stdout}"
                    )
                else:
                    compose("--profile", profile, "up", "--detach", "--no-build")
                    name = "app" if profile == "development" else "app-production"
                    wait_until_live(f"http://127.0.0.1:{ports[name]}", f"{compose_project}-{name}-1")
                    status, _ = http_get(f"http://127.0.0.1:{ports[name]}/health/ready")
                    assert status == 200, f"{name}: /health/ready {status}"
                    # Each profile starts its own service only (plus what it depends on).
                    assert running() == {name}, f"--profile {profile} up started {running()}"
                    compose("--profile", profile, "stop")
                record("compose_profiles", f"{database}-{profile}")
        finally:
            compose("--profile", "development", "--profile", "production", "--profile", "backup", "down",
                    "--volumes", "--timeout", "30")  # fmt: skip
    note("compose", database, f"compose ({database}): {', '.join(COMPOSE_RUNS[database])} run through podman")
