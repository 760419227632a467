"""Level 3 of the test ladder: the real validators on every distinct deployment and CI artifact.

All 864 variants are rendered (cached by template content) and their artifacts deduplicated by content hash
(tests/artifact_checks.py), so each distinct file or manifest set meets its validator once:

- Dockerfile: hadolint (warning level) and the hardening checks (multi-stage, numeric non-root user, liveness
  HEALTHCHECK without curl, exec-form CMD, STOPSIGNAL, OCI labels, no build tools in the runtime stage).
- compose.yaml: `docker-compose config -q` with every referenced variable set, for no profile, each profile
  and all together; the compose-spec schema; credentials only from `${VAR:?message}`.
- Kubernetes: every manifest strictly against the schemas of Kubernetes 1.29, 1.33 and the newest bundled;
  every overlay rendered by `kubectl kustomize` (skipped where kubectl is missing) and its documents too.
- GitHub workflows: actionlint (with shellcheck), zizmor (offline, medium and up), the workflow and
  Dependabot schemas, SHA-pinned actions, timeouts, permissions. GitLab: the gitlab-ci schema.
- pre-commit: `pre-commit validate-config`.
- checkov (its own venv, `make checkov`) on a few representative variants: the Dockerfile, the rendered
  overlays, the CI files and the source, with the explicit skip list below and no other failure.

A validator missing from .venv/ fails the test: `make venv` installs them all (pinned in pyproject.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from artifact_checks import (
    KUBERNETES_VERSIONS,
    Artifact,
    artifacts,
    canonical,
    compose_environment,
    compose_problems,
    compose_profiles,
    dockerfile_problems,
    dockerignore_problems,
    overlay_problems,
    paths,
    raw_documents,
    run,
    tool,
    workflow_problems,
)
from rendering import locked, record, render
from variants import DEFAULT_VARIANT, REPO_ROOT, variant_id

pytestmark = pytest.mark.artifacts

VERSIONS = (*KUBERNETES_VERSIONS, kubernetes_validate.latest_version())
OVERLAYS = ("staging", "production")
CHECKOV = REPO_ROOT / "build" / "checkov-venv" / "bin" / "checkov"
# Every checkov check the generated artifacts do not pass, and why that is the right call for them.
CHECKOV_SKIPS = {
    # Overlays pin the released tag; the digest exists only once CI has pushed the image. Deployments pin it
    # with `kustomize edit set image <name>@sha256:...` (the overlays' comment says so).
    "CKV_K8S_43": "Image should use digest",
    # The service reads every setting from its environment (pydantic-settings, twelve-factor); the Secret
    # reaches it through envFrom, and the values never appear in the manifests.
    "CKV_K8S_35": "Prefer using secrets as files over secrets as environment variables",
}
# A few variants that between them produce every kind of artifact checkov reads.
CHECKOV_VARIANTS = {
    "default": DEFAULT_VARIANT,
    "postgres-redis-github": {**DEFAULT_VARIANT, "database": "postgres", "redis": True},
    "none-gitlab-no-auth": {**DEFAULT_VARIANT, "database": "none", "ci": "gitlab", "auth": "none"},
}


def where(item: Artifact) -> str:
    return f"{item.path} (from {item.variants} variants, e.g. {variant_id(item.answers)})"


def validated(items: list[Artifact]) -> None:
    for item in items:
        record("artifacts_validated", f"{item.kind}:{item.digest}")


def test_dockerfiles_pass_hadolint_and_are_hardened() -> None:
    dockerfiles = artifacts("dockerfile")
    code, output = run(
        [tool("hadolint"), "--failure-threshold", "warning", "--no-color", *paths(dockerfiles)]
    )
    problems = [] if code == 0 else [f"hadolint failed:\n{output}"]
    for item in dockerfiles:
        problems += [f"{where(item)}: {problem}" for problem in dockerfile_problems(item.path, item.answers)]
    ignores = artifacts("dockerignore")
    for item in ignores:
        problems += [f"{where(item)}: {problem}" for problem in dockerignore_problems(item.path)]
    assert not problems, "\n".join(problems)
    validated(dockerfiles + ignores)


def test_compose_files_pass_docker_compose_config_for_every_profile_set() -> None:
    composes = artifacts("compose")
    code, output = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *paths(composes)]
    )
    problems = [] if code == 0 else [f"compose-spec schema:\n{output}"]
    compose_binary = tool("docker-compose")
    for item in composes:
        profiles = compose_profiles(yaml.safe_load(item.path.read_text(encoding="utf-8")))
        env = compose_environment(item.path)
        selections = [[], *([profile] for profile in profiles), profiles]
        for selection in selections:
            flags = [flag for profile in selection for flag in ("--profile", profile)]
            code, output = run(
                [compose_binary, "-f", str(item.path), *flags, "config", "-q"], item.project, env
            )
            if code != 0:
                problems.append(f"{where(item)}: config with profiles {selection or 'none'}:\n{output}")
        problems += [f"{where(item)}: {problem}" for problem in compose_problems(item.path, item.answers)]
    assert not problems, "\n".join(problems)
    validated(composes)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubernetes_manifests_validate_strictly(version: str) -> None:
    trees = artifacts("kubernetes")
    documents: dict[str, tuple[Any, str]] = {}
    for item in trees:
        for key, value in raw_documents(item.path).items():
            documents.setdefault(key, value)
    problems = []
    for document, path in documents.values():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{path} {document.get('kind')}: {error}")
    assert not problems, f"against Kubernetes {version}:\n" + "\n".join(problems)
    print(
        f"{len(documents)} distinct manifests from {len(trees)} distinct trees valid for Kubernetes {version}"
    )
    validated(trees)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlays_render_valid_hardened_manifests(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: overlays not rendered (the manifests themselves were validated)")
    trees = artifacts("kubernetes")
    problems: list[str] = []
    rendered: dict[str, Any] = {}
    for item in trees:
        code, output = run([kubectl, "kustomize", str(item.path / "overlays" / overlay)])
        if code != 0:
            problems.append(f"{where(item)}: kubectl kustomize overlays/{overlay} failed:\n{output}")
            continue
        documents = [document for document in yaml.safe_load_all(output) if document]
        slug = str(yaml.safe_load((item.project / ".copier-answers.yml").read_text())["project_slug"])
        problems += [f"{where(item)} {overlay}: {p}" for p in overlay_problems(documents, item.answers, slug)]
        for document in documents:
            rendered.setdefault(canonical(document), document)
    for document in rendered.values():
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{overlay} {document['kind']} against {version}: {error}")
    assert not problems, "\n".join(problems)
    print(f"{len(trees)} distinct trees: overlay {overlay} renders {len(rendered)} distinct valid documents")
    for item in trees:
        record("artifacts_validated", f"kustomize-{overlay}:{item.digest}")


def test_github_workflows_pass_actionlint_zizmor_and_schemas() -> None:
    workflows = artifacts("workflow")
    files = paths(workflows)
    problems = []
    checks = {
        "actionlint": [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-no-color", *files],
        "zizmor": [tool("zizmor"), "--offline", "--min-severity", "medium", "--no-progress", *files],
        "workflow schema": [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
    }
    for name, command in checks.items():
        code, output = run(command)
        if code != 0:
            problems.append(f"{name} failed:\n{output}")
    for item in workflows:
        problems += [f"{where(item)}: {problem}" for problem in workflow_problems(item.path)]
    dependabot = artifacts("dependabot")
    code, output = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", *paths(dependabot)]
    )
    if code != 0:
        problems.append(f"dependabot schema:\n{output}")
    assert not problems, "\n".join(problems)
    validated(workflows + dependabot)


def test_gitlab_ci_passes_its_schema() -> None:
    pipelines = artifacts("gitlab_ci")
    code, output = run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", *paths(pipelines)])
    assert code == 0, f"gitlab-ci schema:\n{output}"
    for item in pipelines:
        jobs = {
            name: job for name, job in yaml.safe_load(item.path.read_text()).items() if isinstance(job, dict)
        }
        scripted = [name for name, job in jobs.items() if "script" in job and not name.startswith(".")]
        assert {"lint", "test", "build-image", "trivy", "release"} <= set(scripted), where(item)
    validated(pipelines)


def test_renovate_configs_pass_their_schema_and_cover_what_dependabot_does() -> None:
    """GitLab projects get Renovate for what Dependabot updates on GitHub: uv.lock and image digests."""
    configs = artifacts("renovate")
    assert configs, "no variant renders renovate.json"
    code, output = run([tool("check-jsonschema"), "--builtin-schema", "vendor.renovate", *paths(configs)])
    assert code == 0, f"renovate schema:\n{output}"
    for item in configs:
        config = json.loads(item.path.read_text(encoding="utf-8"))
        assert {"pep621", "dockerfile", "docker-compose"} <= set(config["enabledManagers"]), where(item)
        assert config["pinDigests"] is True, where(item)
        assert config["lockFileMaintenance"]["enabled"] is True, where(item)
    validated(configs)


def test_pre_commit_configs_are_valid() -> None:
    configs = artifacts("pre_commit")
    code, output = run([tool("pre-commit"), "validate-config", *paths(configs)])
    assert code == 0, f"pre-commit validate-config:\n{output}"
    wanted = {"ruff", "ruff-format", "mypy", "bandit", "detect-secrets", "hadolint", "shellcheck"}
    wanted |= {"check-merge-conflict", "end-of-file-fixer", "trailing-whitespace"}
    for item in configs:
        config = yaml.safe_load(item.path.read_text(encoding="utf-8"))
        hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
        assert wanted <= hooks, f"{where(item)}: missing hooks {wanted - hooks}"
    validated(configs)


def checkov_binary() -> Path:
    """build/checkov-venv/, made once by `make checkov` however many workers ask; failing to make it fails."""
    with locked(CHECKOV.parents[1]):
        result = subprocess.run(
            ["make", "-s", "checkov"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
    assert result.returncode == 0 and CHECKOV.exists(), (
        f"make checkov failed:\n{result.stdout}{result.stderr}"
    )
    return CHECKOV


@pytest.mark.parametrize("name", sorted(CHECKOV_VARIANTS))
def test_checkov_passes_on_representative_variants(name: str, tmp_path: Path) -> None:
    checkov = checkov_binary()
    project = render(CHECKOV_VARIANTS[name])
    scan = tmp_path / "scan"
    shutil.copytree(project, scan, ignore=shutil.ignore_patterns("tests", ".venv", "__pycache__", "k8s"))
    frameworks = ["dockerfile", "secrets", "github_actions", "gitlab_ci"]
    kubectl = shutil.which("kubectl")
    if (project / "deploy" / "k8s").is_dir() and kubectl:
        # The overlays as applied (namespaced, generated ConfigMap), not the base's fragments.
        frameworks.append("kubernetes")
        (scan / "k8s-rendered").mkdir()
        for overlay in OVERLAYS:
            code, output = run([kubectl, "kustomize", str(project / "deploy" / "k8s" / "overlays" / overlay)])
            assert code == 0, output
            (scan / "k8s-rendered" / f"{overlay}.yaml").write_text(output)
    command = [str(checkov), "--directory", str(scan), "--framework", *frameworks, "--output", "json"]
    command += ["--skip-check", ",".join(CHECKOV_SKIPS), "--skip-download"]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{report['check_type']} {check['check_id']} {check['check_name']}: {check['resource']} "
        f"({check['file_path']})"
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert not failed and result.returncode == 0, (
        "checkov failed:\n" + "\n".join(failed) + result.stderr[-2000:]
    )
    passed = [
        (report["check_type"], check) for report in reports for check in report["results"]["passed_checks"]
    ]
    for check_type, check in passed:
        record(
            "checkov_checks",
            f"{name}:{check_type}:{check['check_id']}:{check['resource']}:{check['file_path']}",
        )
    print(f"checkov on {name}: {len(passed)} checks passed, {len(CHECKOV_SKIPS)} skipped by the list above")
