"""Level 7 helpers: podman (daemonless) with this repository's containers.conf, the run options the
generated manifests declare, and a ledger that removes every container, volume and process a test made.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from variants import REPO_ROOT

CONTAINERS_CONF = REPO_ROOT / "tests" / "containers" / "containers.conf"
BASES_SCRIPT = REPO_ROOT / "scripts" / "container_bases.py"
# Cold builds took 25-75 s here (uv from the index, apt for the postgres variant); generous for a loaded CI.
BUILD_TIMEOUT = 900
COMMAND_TIMEOUT = 300
# From `podman run` to /health/live answering: a few seconds here; the wait ends when it answers.
START_SECONDS = 90
_names = itertools.count()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail under CI=true, where every level must really run."""
    if in_ci():
        pytest.fail(f"CI=true and level 7 cannot run: {reason}")
    pytest.skip(reason)


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def podman(
    *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def unique_name(kind: str) -> str:
    return f"rampart-l7-{os.getpid()}-{kind}-{next(_names)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(
    url: str, headers: Mapping[str, str] | None = None, data: bytes | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}), data=data)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Ledger:
    """Everything a test started, removed at its end whatever happened (containers first, then volumes)."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def volume(self) -> str:
        name = unique_name("volume")
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def clean(self) -> list[str]:
        problems = []
        for name in reversed(self.containers):
            result = podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
            if result.returncode != 0 and "no such container" not in result.stderr:
                problems.append(f"container {name}: {result.stderr.strip()}")
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for name in self.volumes:
            result = podman("volume", "rm", "--force", name, check=False)
            if result.returncode != 0:
                problems.append(f"volume {name}: {result.stderr.strip()}")
        for name in self.images:
            podman("rmi", "--force", name, check=False)
        for path in self.paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return problems


@contextlib.contextmanager
def ledger() -> Iterator[Ledger]:
    book = Ledger()
    try:
        yield book
    finally:
        problems = book.clean()
        assert not problems, "clean-up failed:\n" + "\n".join(problems)


# --- what the manifests declare ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hardening:
    """The run options of one workload in the Kubernetes manifests, as podman flags."""

    user: str
    read_only: bool
    drop_all_capabilities: bool
    no_new_privileges: bool
    tmpfs: tuple[tuple[str, str], ...]  # (mount path, size)
    volumes: tuple[tuple[str, str], ...]  # (volume name in the manifest, mount path)
    command: tuple[str, ...] | None
    grace_seconds: int | None

    def flags(self, volumes: Mapping[str, str]) -> list[str]:
        """``volumes`` maps each manifest volume name to the podman volume standing in for it."""
        flags = ["--user", self.user]
        if self.read_only:
            flags.append("--read-only")
        if self.drop_all_capabilities:
            flags += ["--cap-drop", "ALL"]
        if self.no_new_privileges:
            flags += ["--security-opt", "no-new-privileges:true"]
        for path, size in self.tmpfs:
            flags += ["--tmpfs", f"{path}:rw,size={size},mode=1777"]
        for name, path in self.volumes:
            flags += ["--volume", f"{volumes[name]}:{path}"]
        return flags


_SIZES = {"Ki": "k", "Mi": "m", "Gi": "g"}


def _tmpfs_size(quantity: str) -> str:
    for suffix, unit in _SIZES.items():
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + unit
    raise AssertionError(f"emptyDir sizeLimit {quantity!r}: not a Ki/Mi/Gi quantity the test can map")


def manifest_documents(project: Path) -> list[dict[str, Any]]:
    base = project / "deploy" / "k8s" / "base"
    documents = []
    for path in sorted(base.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return documents


def hardening(project: Path, kind: str, container: str, *, init: bool = False) -> Hardening:
    """The named container of the Deployment or CronJob, with its pod's security context and volumes."""
    workload = next(doc for doc in manifest_documents(project) if doc["kind"] == kind)
    pod = workload["spec"]["template"]["spec"] if kind == "Deployment" else None
    if kind == "CronJob":
        pod = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod is not None
    containers = pod.get("initContainers", []) if init else pod["containers"]
    spec = next(item for item in containers if item["name"] == container)
    pod_security = pod["securityContext"]
    security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] and security["runAsNonRoot"], f"{kind}/{container} may run as root"
    sources = {volume["name"]: volume for volume in pod.get("volumes", [])}
    tmpfs, volumes = [], []
    for mount in spec.get("volumeMounts", []):
        source = sources[mount["name"]]
        if "emptyDir" in source:
            tmpfs.append((mount["mountPath"], _tmpfs_size(source["emptyDir"].get("sizeLimit", "64Mi"))))
        elif "persistentVolumeClaim" in source:
            volumes.append((mount["name"], mount["mountPath"]))
        else:
            raise AssertionError(
                f"{kind}/{container}: volume {mount['name']} is of a kind the test cannot map"
            )
    return Hardening(
        user=f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}",
        read_only=security["readOnlyRootFilesystem"],
        drop_all_capabilities=security["capabilities"]["drop"] == ["ALL"],
        no_new_privileges=security["allowPrivilegeEscalation"] is False,
        tmpfs=tuple(tmpfs),
        volumes=tuple(volumes),
        command=tuple(spec["command"]) if "command" in spec else None,
        grace_seconds=pod.get("terminationGracePeriodSeconds"),
    )


def config_env(project: Path) -> dict[str, str]:
    """The ConfigMap's settings (deploy/k8s/base/config.env), as the pods get them."""
    settings = {}
    for line in (project / "deploy" / "k8s" / "base" / "config.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    return settings


def secret_names(project: Path) -> list[str]:
    """The settings the example Secret says the pods need (stringData keys)."""
    path = project / "deploy" / "k8s" / "base" / "secret.example.yaml"
    if not path.is_file():
        return []
    secret = yaml.safe_load(path.read_text(encoding="utf-8"))
    return sorted(secret.get("stringData") or {})


# --- images ---------------------------------------------------------------------------------------------


def image_layers(image: str) -> list[tuple[str, int]]:
    """(diff id, size) of each layer, oldest first: history entries with content, matched to the rootfs."""
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    layers = inspected["RootFS"]["Layers"]
    history = json.loads(podman("history", "--format", "json", image).stdout)
    sizes = [entry["size"] for entry in reversed(history) if entry["size"] > 0]
    assert len(sizes) == len(layers), (
        f"{image}: {len(layers)} layers, {len(sizes)} history entries with content"
    )
    return list(zip(layers, sizes, strict=True))


def wait_until_live(base_url: str, container: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http_get(f"{base_url}/health/live")[0] == 200:
                return
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        if state not in ("running", "created", "configured"):
            break
        time.sleep(0.5)
    logs = podman("logs", container, check=False)
    raise AssertionError(
        f"{container} never answered /health/live\n{logs.stdout[-3000:]}\n{logs.stderr[-3000:]}"
    )
