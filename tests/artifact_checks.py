"""Level 3 helpers: the distinct deployment and CI artifacts of all variants, and the validators' runs.

Every variant is rendered (tests/rendering.py caches renders by template content, so after level 2 this
only reads files); each kind of artifact is deduplicated by content hash, so each distinct Dockerfile,
compose file, manifest set or workflow meets its validator once, however many variants produce it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rendering import render
from variants import ALL_VARIANTS

DEV_BIN = Path(sys.executable).parent
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
# Files that make up each kind of artifact, relative to the generated project.
SINGLE_FILES = {
    "dockerfile": "Dockerfile",
    "dockerignore": ".dockerignore",
    "compose": "compose.yaml",
    "dependabot": ".github/dependabot.yml",
    "gitlab_ci": ".gitlab-ci.yml",
    "renovate": "renovate.json",
    "pre_commit": ".pre-commit-config.yaml",
}
K8S_DIR = "deploy/k8s"
WORKFLOWS_DIR = ".github/workflows"
ACTION_PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+?)@([0-9a-f]{40})\s+#\s*v?\d+(\.\d+)*\s*$")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)")


@dataclass
class Artifact:
    """One distinct content of one kind of artifact, and the first project (and answers) that produced it."""

    kind: str
    digest: str
    path: Path
    project: Path
    answers: Mapping[str, Any]
    variants: int = field(default=1)


def tool(name: str) -> str:
    """A validator from the dev venv; missing means `make venv` did not install it: fail, never skip."""
    path = DEV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {DEV_BIN}: run `make venv` (it is pinned in pyproject.toml)")
    return str(path)


def run(command: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(
        command, cwd=cwd, env=None if env is None else dict(env), capture_output=True, text=True, check=False
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def _variant_order() -> list[dict[str, Any]]:
    """Each xdist worker walks the variants from a different start, so cold renders split between them."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw") or 0)
    start = len(ALL_VARIANTS) * index // max(count, 1)
    return ALL_VARIANTS[start:] + ALL_VARIANTS[:start]


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _project_artifacts(project: Path) -> Iterator[tuple[str, str, Path]]:
    for kind, relative in SINGLE_FILES.items():
        path = project / relative
        if path.is_file():
            yield kind, hashlib.sha256(path.read_bytes()).hexdigest(), path
    if (project / K8S_DIR).is_dir():
        yield "kubernetes", _tree_digest(project / K8S_DIR), project / K8S_DIR
    for path in sorted((project / WORKFLOWS_DIR).glob("*.y*ml")):
        yield "workflow", hashlib.sha256(path.read_bytes()).hexdigest(), path


@cache
def all_artifacts() -> dict[str, dict[str, Artifact]]:
    """kind -> content digest -> the first artifact with that content, across all variants."""
    found: dict[str, dict[str, Artifact]] = {}
    for answers in _variant_order():
        project = render(answers)
        for kind, digest, path in _project_artifacts(project):
            known = found.setdefault(kind, {}).get(digest)
            if known is None:
                found[kind][digest] = Artifact(kind, digest, path, project, answers)
            else:
                known.variants += 1
    return found


def artifacts(kind: str) -> list[Artifact]:
    distinct = list(all_artifacts().get(kind, {}).values())
    assert distinct, f"no variant produced a {kind} artifact"
    return distinct


def paths(items: Iterable[Artifact]) -> list[str]:
    return [str(item.path) for item in items]


# --- Dockerfile ------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_problems(dockerfile: Path, answers: Mapping[str, Any]) -> list[str]:
    """What hadolint does not check: the hardening the issue asks for."""
    project = dockerfile.parent
    instructions = dockerfile_instructions(dockerfile.read_text(encoding="utf-8"))
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    problems = []
    if len(froms) < 2:
        problems.append("not multi-stage")
    for image in froms:
        reference = image.split()[0]
        if ":" not in reference.rsplit("/", 1)[-1] or reference.endswith(":latest"):
            problems.append(f"FROM {reference} is not pinned by tag")
    runtime = f"python:{answers['python_version']}-slim-trixie"
    if not froms[-1].startswith(runtime + " "):
        problems.append(f"the runtime stage is not {runtime}: {froms[-1]}")
    start = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[start:]
    final_text = "\n".join(f"{keyword} {rest}" for keyword, rest in final)
    users = [rest for keyword, rest in final if keyword == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]):
        problems.append(f"the final USER is not a numeric non-root uid:gid: {users}")
    healthchecks = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    if len(healthchecks) != 1 or "/health/live" not in healthchecks[0]:
        problems.append("no HEALTHCHECK on /health/live")
    elif re.search(r"\b(curl|wget)\b", healthchecks[0]):
        problems.append("HEALTHCHECK needs curl/wget, which the slim image lacks")
    if ("STOPSIGNAL", "SIGTERM") not in final:
        problems.append("no STOPSIGNAL SIGTERM")
    commands = [rest for keyword, rest in final if keyword == "CMD"]
    if not commands or not commands[-1].startswith("["):
        problems.append("CMD is not in exec form")
    for variable in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "APP_HOST=0.0.0.0"):
        if variable not in final_text:
            problems.append(f"the runtime stage does not set {variable}")
    if "org.opencontainers.image." not in final_text:
        problems.append("no OCI labels in the runtime stage")
    if re.search(
        r"--from=uv\b|\buv (sync|pip)|pip install|--mount=type=cache|build-essential|\bgcc\b", final_text
    ):
        problems.append("the runtime stage has build tools, uv or caches")
    if "uv sync --locked" not in dockerfile.read_text(encoding="utf-8"):
        problems.append("the builder does not install from the lock (uv sync --locked)")
    for keyword, rest in instructions:
        if keyword == "COPY" and "--from=" not in rest:
            sources = rest.split()[:-1]
            # uv.lock is made by the user's first `make install` (the Dockerfile says so); all else ships.
            missing = [
                source for source in sources if source != "uv.lock" and not (project / source).exists()
            ]
            if missing:
                problems.append(f"COPY of files the project does not have: {missing}")
    return problems


def dockerignore_problems(dockerignore: Path) -> list[str]:
    lines = {line.strip() for line in dockerignore.read_text(encoding="utf-8").splitlines()}
    wanted = {".env": "secrets", ".git": "VCS data", "**/.venv": "virtual environments"}
    problems = [
        f".dockerignore does not keep out {what} ({line})"
        for line, what in wanted.items()
        if line not in lines
    ]
    if not any("__pycache__" in line for line in lines):
        problems.append(".dockerignore does not keep out caches (__pycache__)")
    return problems


# --- compose ---------------------------------------------------------------------------------------------

INTERPOLATED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
DEFAULT_PASSWORD = re.compile(r"PASSWORD *[:=] *[^$ {/]")


def compose_profiles(compose: dict[str, Any]) -> list[str]:
    return sorted({profile for spec in compose["services"].values() for profile in spec.get("profiles", [])})


def compose_environment(path: Path) -> dict[str, str]:
    """Every variable the file references set to a throwaway value; COMPOSE_* from the caller removed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    env.update(dict.fromkeys(INTERPOLATED.findall(path.read_text(encoding="utf-8")), "artifact-check"))
    return env


def compose_problems(path: Path, answers: Mapping[str, Any]) -> list[str]:
    text = path.read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    services: dict[str, dict[str, Any]] = compose["services"]
    problems = [f"default password: {match[0]!r}" for match in DEFAULT_PASSWORD.finditer(text)]
    for name, spec in services.items():
        environment = spec.get("environment") or {}
        for variable, value in environment.items() if isinstance(environment, dict) else []:
            secret = "PASSWORD" in variable or variable == "APP_API_KEYS"
            # `${VAR:?message}`, or `${VAR?message}` for passwords (the images refuse an empty one).
            if secret and not re.fullmatch(r"\$\{[A-Z_]+:?\?[^}]+\}", str(value)):
                problems.append(f"{name}: {variable} must come from the environment as ${{VAR:?message}}")
    dependencies = {name: spec for name, spec in services.items() if "build" not in spec}
    for name, spec in dependencies.items():
        if "ports" in spec:
            problems.append(f"{name}: a dependency publishes ports")
        if "healthcheck" not in spec:
            problems.append(f"{name}: no healthcheck")
    for name, spec in services.items():
        for dependency, condition in (spec.get("depends_on") or {}).items():
            if dependency in dependencies and condition.get("condition") != "service_healthy":
                problems.append(f"{name}: depends on {dependency} without condition service_healthy")
    expected = {"postgres": {"db"}, "sqlite": set(), "none": set()}[answers["database"]] | (
        {"redis"} if answers["redis"] else set()
    )
    if set(dependencies) != expected:
        problems.append(f"dependency services {sorted(dependencies)}, expected {sorted(expected)}")
    for name in dependencies:
        volumes = [volume.split(":")[0] for volume in services[name].get("volumes", [])]
        if not volumes or any(volume not in (compose.get("volumes") or {}) for volume in volumes):
            problems.append(f"{name}: data not on a named volume")
    production = [spec for spec in services.values() if "production" in spec.get("profiles", [])]
    servers = [spec for spec in production if "build" in spec and "command" not in spec]
    if not servers:
        problems.append("no server in the production profile")
    for spec in servers:
        limits = spec.get("deploy", {}).get("resources", {}).get("limits", {})
        if not (spec.get("read_only") and spec.get("tmpfs") and limits and spec.get("restart")):
            problems.append("the production server lacks read_only, tmpfs, resource limits or restart")
    has_backup = "backup" in compose_profiles(compose)
    if has_backup != (answers["database"] != "none"):
        problems.append(f"backup profile present={has_backup} with database={answers['database']}")
    return problems


# --- Kubernetes ------------------------------------------------------------------------------------------


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True)


def raw_documents(tree: Path) -> dict[str, tuple[Any, str]]:
    """The manifests as written (base, overlays, the Secret example), kustomization files aside."""
    documents: dict[str, tuple[Any, str]] = {}
    for path in sorted(tree.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if document:
                    documents.setdefault(canonical(document), (document, str(path)))
    return documents


def required_kinds(answers: Mapping[str, Any]) -> set[str]:
    kinds = {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service"}
    kinds |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"}
    if answers["database"] != "none":
        kinds |= {"CronJob", "PersistentVolumeClaim"}
    return kinds


def overlay_problems(documents: list[dict[str, Any]], answers: Mapping[str, Any], slug: str) -> list[str]:
    """What strict schemas do not see: the hardening the issue asks for, and references that resolve."""
    problems = []
    kinds = {document["kind"] for document in documents}
    if required_kinds(answers) - kinds:
        problems.append(f"missing kinds {sorted(required_kinds(answers) - kinds)}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    config_maps = {document["metadata"]["name"] for document in by_kind.get("ConfigMap", [])}
    for deployment in by_kind.get("Deployment", []):
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        problems += pod_problems(pod, config_maps, slug)
        if not deployment["spec"]["selector"]["matchLabels"].items() <= labels.items():
            problems.append("Deployment selector does not match its pods")
        for kind in ("Service", "PodDisruptionBudget"):
            for item in by_kind.get(kind, []):
                selector = item["spec"]["selector"]
                selector = (
                    selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
                )
                if not selector.items() <= labels.items():
                    problems.append(f"{kind} {item['metadata']['name']} selects no pod of the Deployment")
        if not pod.get("topologySpreadConstraints"):
            problems.append("no topology spread constraints")
        container = pod["containers"][0]
        for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
            if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"{probe} does not probe {path}")
        if container.get("startupProbe", {}).get("httpGet", {}).get("path") != "/health/startup":
            problems.append("startupProbe does not probe /health/startup")
    for cronjob in by_kind.get("CronJob", []):
        problems += pod_problems(
            cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"], config_maps, slug
        )
    for autoscaler in by_kind.get("HorizontalPodAutoscaler", []):
        target = autoscaler["spec"]["scaleTargetRef"]
        if target["name"] not in {item["metadata"]["name"] for item in by_kind.get("Deployment", [])}:
            problems.append(f"HPA targets {target['name']}, which is no Deployment")
    policies = by_kind.get("NetworkPolicy", [])
    if not any(
        p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        for p in policies
    ):
        problems.append("no default-deny NetworkPolicy")
    namespaces = {
        document["metadata"].get("namespace") for document in documents if document["kind"] != "Namespace"
    }
    if len(namespaces) != 1 or None in namespaces:
        problems.append(f"objects are not all in the overlay's namespace: {namespaces}")
    return problems


def pod_problems(pod: dict[str, Any], config_maps: set[str], slug: str) -> list[str]:
    problems = []
    context = pod.get("securityContext", {})
    if not (
        context.get("runAsNonRoot") and context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    ):
        problems.append("pod securityContext lacks runAsNonRoot or the RuntimeDefault seccomp profile")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service account token")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = container["name"]
        security = container.get("securityContext", {})
        hardened = (
            security.get("allowPrivilegeEscalation") is False
            and security.get("readOnlyRootFilesystem") is True
            and security.get("runAsNonRoot") is True
            and security.get("capabilities", {}).get("drop") == ["ALL"]
            and security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        )
        if not hardened:
            problems.append(f"container {name}: securityContext is not fully hardened")
        resources = container.get("resources", {})
        if not (resources.get("requests") and resources.get("limits", {}).get("memory")):
            problems.append(f"container {name}: no resource requests or memory limit")
        if not re.search(rf"/{re.escape(slug)}:[^:]+$", container["image"]):
            problems.append(f"container {name}: image {container['image']} is not the registry's {slug}")
        for source in container.get("envFrom", []):
            reference = source.get("configMapRef", {}).get("name")
            if reference is not None and reference not in config_maps:
                problems.append(
                    f"container {name}: envFrom names ConfigMap {reference}, which is not rendered"
                )
    if pod.get("terminationGracePeriodSeconds") is None and pod.get("restartPolicy") is None:
        problems.append("no terminationGracePeriodSeconds")
    return problems


# --- GitHub Actions --------------------------------------------------------------------------------------


def workflow_problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    problems = []
    for line in text.splitlines():
        uses = USES.match(line)
        if uses and not ACTION_PIN.match(line):
            problems.append(f"action not pinned by commit SHA with a version comment: {uses[1]}")
    if "permissions" not in workflow:
        problems.append("no top-level permissions")
    if "concurrency" not in workflow:
        problems.append("no concurrency group")
    for name, job in workflow["jobs"].items():
        if "timeout-minutes" not in job:
            problems.append(f"job {name} has no timeout-minutes")
    return problems
