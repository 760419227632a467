"""Level 6 of the test ladder: the cookiecutter front-end.

pytest-cookies bakes the same tree as `copier copy` of the same answers; the answers file points at a
durable source, so `copier update` works on a cookiecutter-made project; `--checkout` pins the version; and
without copier in cookiecutter's environment the bake stops with the install hint before writing anything.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import copier
import pytest
import yaml
from cookiecutter.main import cookiecutter
from cookiecutter.utils import create_env_with_context
from pytest_cookies.plugin import Cookies

from rendering import TEMPLATE_INPUTS

pytestmark = pytest.mark.cookiecutter

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIER_YML: dict[str, Any] = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
ANSWERS_FILE = str(COPIER_YML.get("_answers_file", ".copier-answers.yml"))
# What the template repository ships to a cookiecutter user (tests, docs... are not needed to bake).
TEMPLATE_ITEMS = (
    *TEMPLATE_INPUTS,
    "cookiecutter.json",
    "rampart_frontend.py",
    "hooks",
    "{{cookiecutter.project_slug}}",
)
VOLATILE_ANSWERS = (b"_src_path:", b"_commit:")  # differ between any two copies; everything else must not
UPDATE_PROBE = "rampart-update-probe.txt"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Rampart Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Rampart Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}

NON_DEFAULT_ANSWERS = [
    pytest.param(
        {
            "project_name": "3D Print-Farm Service 2",
            "author_name": "Zoë O'Brien-Núñez",
            "python_version": "3.13",
            "database": "postgres",
            "redis": True,
            "kubernetes": False,
            "ci": "gitlab",
            "auth": "none",
            "sentry": True,
            "opentelemetry": True,
        },
        id="every-option-changed",
    ),
    pytest.param(
        {
            "project_name": "Logging",
            "project_slug": "log-shipper",
            "package_name": "log_shipper",
            "description": "Ships logs — fast, ünïcode and all",
            "author_email": "ops@logs.example.org",
            "python_version": "3.11",
            "database": "none",
            "ci": "none",
            "redis": "true",
            "kubernetes": "false",
        },
        id="explicit-names-bool-strings",
    ),
]


@pytest.fixture(scope="module")
def plain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template repository's files in a plain folder: copier renders it without cloning (2x faster)."""
    return copy_template(tmp_path_factory.mktemp("plain-template"))


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commits work without a global git identity; copier's mirror cache stays in the test's folder."""
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COPIER_CACHE_DIR", str(tmp_path / "copier-cache"))


def copy_template(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for item in TEMPLATE_ITEMS:
        source = REPO_ROOT / item
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, destination / item, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, destination / item)
    return destination


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)


def tree(root: Path) -> dict[str, Any]:
    """Every entry under `root` by relative path: file bytes and executable bit, link targets, folders.

    The answers file loses its `_src_path`/`_commit` lines; `.git` (a task may create one) counts as an
    entry, its contents do not.
    """
    entries: dict[str, Any] = {}
    for folder, dirnames, filenames in os.walk(root):
        base = Path(folder)
        if ".git" in dirnames:
            dirnames.remove(".git")
            entries[(base / ".git").relative_to(root).as_posix()] = "git repository"
        for name in [*dirnames, *filenames]:
            path = base / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[relative] = "folder"
            else:
                entries[relative] = (path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR))
    content, executable = entries[ANSWERS_FILE]
    kept = [line for line in content.splitlines(keepends=True) if not line.startswith(VOLATILE_ANSWERS)]
    entries[ANSWERS_FILE] = (b"".join(kept), executable)
    return entries


def assert_same_tree(baked: Path, copied: Path) -> None:
    baked_tree, copied_tree = tree(baked), tree(copied)
    assert sorted(baked_tree) == sorted(copied_tree)
    differing = [path for path in baked_tree if baked_tree[path] != copied_tree[path]]
    assert differing == []


def answers_of(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    return answers


def bake_and_copy(cookies: Cookies, root: Path, answers: dict[str, Any], vcs_ref: str | None) -> Path:
    """Bake `answers` with pytest-cookies, copy them with copier, assert the trees match; the bake's path."""
    result = cookies.bake(extra_context=answers, template=str(root))
    assert result.exception is None, result.exception
    baked = result.project_path
    copied = baked.parent.parent / "copier" / baked.name
    copier.run_copy(
        str(root), str(copied), data=answers, defaults=True, unsafe=True, quiet=True, vcs_ref=vcs_ref
    )
    assert_same_tree(baked, copied)
    return baked


def test_bake_of_defaults_from_the_repository_equals_copier_copy(
    cookies: Cookies, use_frontend: Callable[[Path | None], None]
) -> None:
    use_frontend(REPO_ROOT)
    baked = bake_and_copy(cookies, REPO_ROOT, {}, vcs_ref="HEAD")
    answers = answers_of(baked)
    assert answers["_src_path"] == str(REPO_ROOT)
    assert answers["_commit"], "a git template records the rendered commit"


@pytest.mark.parametrize("answers", NON_DEFAULT_ANSWERS)
def test_bake_equals_copier_copy_of_the_same_answers(
    cookies: Cookies,
    use_frontend: Callable[[Path | None], None],
    plain_template: Path,
    answers: dict[str, Any],
) -> None:
    use_frontend(plain_template)
    baked = bake_and_copy(cookies, plain_template, answers, vcs_ref=None)
    recorded = answers_of(baked)
    assert recorded["_src_path"] == str(plain_template)
    assert Path(recorded["_src_path"], "copier.yml").is_file()
    assert "_commit" not in recorded
    assert {name: recorded[name] for name in ("project_name", "author_name")} == {
        name: answers.get(name, COPIER_YML[name]["default"]) for name in ("project_name", "author_name")
    }


@pytest.fixture
def template_repository(tmp_path: Path, git_env: None) -> Path:
    """A git copy of the template: v0.0.1, then v0.0.2 adds UPDATE_PROBE to the rendered tree."""
    repo = copy_template(tmp_path / "rampart-template")
    git(repo, "init", "--quiet")
    commit_all(repo, "Rampart v0.0.1")
    git(repo, "tag", "v0.0.1")
    (repo / "template" / UPDATE_PROBE).write_text("added in v0.0.2\n", encoding="utf-8")
    commit_all(repo, "Rampart v0.0.2")
    git(repo, "tag", "v0.0.2")
    return repo


def test_checkout_pins_the_version_and_copier_update_brings_the_next(
    template_repository: Path,
    use_frontend: Callable[[Path | None], None],
    cookiecutter_config: Path,
    tmp_path: Path,
) -> None:
    url = f"git+file://{template_repository}"
    use_frontend(None)
    project = Path(
        cookiecutter(
            url,
            checkout="v0.0.1",
            no_input=True,
            output_dir=str(tmp_path / "out"),
            config_file=str(cookiecutter_config),
        )
    )
    assert not (project / UPDATE_PROBE).exists(), "--checkout v0.0.1 rendered a later version"
    assert answers_of(project)["_commit"] == "v0.0.1"
    assert answers_of(project)["_src_path"] == url

    git(project, "init", "--quiet")
    commit_all(project, "Baked with cookiecutter")
    copier.run_update(str(project), defaults=True, unsafe=True, overwrite=True, quiet=True)

    assert (project / UPDATE_PROBE).read_text(encoding="utf-8") == "added in v0.0.2\n"
    assert answers_of(project)["_commit"] == "v0.0.2"
    assert answers_of(project)["_src_path"] == url
    assert git(project, "diff", "--name-only", "--diff-filter=U") == ""


def run_update_script(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's scripts/update.sh (what `make update` runs), with this environment's copier and uv."""
    tools = Path(sys.executable).parent
    env = {**os.environ, "COPIER": str(tools / "copier"), "UV": str(tools / "uv")}
    return subprocess.run(
        ["scripts/update.sh", *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )


def test_bake_of_an_untagged_commit_updates_to_the_next_release_and_to_head(
    template_repository: Path,
    use_frontend: Callable[[Path | None], None],
    cookiecutter_config: Path,
    tmp_path: Path,
) -> None:
    """Baked from a commit after the newest release (not tagged): the project records v0.0.2-1-g<hash>."""
    (template_repository / "template" / "between-releases.txt").write_text("after v0.0.2\n", encoding="utf-8")
    commit_all(template_repository, "A commit after v0.0.2")
    use_frontend(None)
    baked = cookiecutter(
        f"git+file://{template_repository}",
        no_input=True,
        output_dir=str(tmp_path / "out"),
        config_file=str(cookiecutter_config),
    )
    project = Path(baked)
    assert answers_of(project)["_commit"].startswith("v0.0.2-1-g"), answers_of(project)["_commit"]
    git(project, "init", "--quiet")
    commit_all(project, "Baked with cookiecutter")

    nothing_newer = run_update_script(project)
    assert nothing_newer.returncode == 0, nothing_newer.stdout + nothing_newer.stderr
    assert "past the newest release" in nothing_newer.stdout, nothing_newer.stdout
    assert git(project, "status", "--porcelain") == ""

    (template_repository / "template" / "next-release.txt").write_text("in v0.0.3\n", encoding="utf-8")
    commit_all(template_repository, "Rampart v0.0.3")
    git(template_repository, "tag", "v0.0.3")
    released = run_update_script(project)
    assert released.returncode == 0, released.stdout + released.stderr
    assert answers_of(project)["_commit"] == "v0.0.3"
    assert (project / "next-release.txt").is_file() and (project / "between-releases.txt").is_file()
    commit_all(project, "Update from the template")

    (template_repository / "template" / "after-release.txt").write_text("after v0.0.3\n", encoding="utf-8")
    commit_all(template_repository, "A commit after v0.0.3")
    head = run_update_script(project, "--vcs-ref", "HEAD")
    assert head.returncode == 0, head.stdout + head.stderr
    assert answers_of(project)["_commit"].startswith("v0.0.3-1-g")
    assert (project / "after-release.txt").is_file()


@pytest.fixture(scope="module")
def python_without_copier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with cookiecutter (pinned like ours, from uv's shared cache) and no copier: a pipx install."""
    venv = tmp_path_factory.mktemp("no-copier") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is needed to install cookiecutter into a venv without copier"
    freeze = subprocess.run(
        [uv, "pip", "freeze", "--python", sys.executable], check=True, capture_output=True, text=True
    )
    constraints = venv.parent / "constraints.txt"
    constraints.write_text(freeze.stdout, encoding="utf-8")
    cookiecutter_pin = f"cookiecutter=={importlib.metadata.version('cookiecutter')}"
    install = [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints)]
    subprocess.run([*install, cookiecutter_pin], check=True)
    return python


def test_bake_stops_with_install_hint_when_copier_is_missing(
    python_without_copier: Path, cookiecutter_config: Path, tmp_path: Path
) -> None:
    probe = subprocess.run([python_without_copier, "-c", "import copier"], capture_output=True)
    assert probe.returncode != 0, "this venv was meant to lack copier"
    output = tmp_path / "out"
    command = [python_without_copier, "-m", "cookiecutter", str(REPO_ROOT)]
    options = ["--config-file", str(cookiecutter_config), "--output-dir", str(output)]
    # Interactive, answers on stdin: the hint must come before the first question, not after the last.
    bake = subprocess.run([*command, *options], input="\n" * 20, capture_output=True, text=True, cwd=tmp_path)
    assert bake.returncode != 0
    said = (bake.stdout + bake.stderr).strip()
    assert said.splitlines() == [f"Unable to load extension: {frontend().COPIER_MISSING}"]
    assert f"pipx inject cookiecutter copier=={copier_pin()}" in said
    assert not output.exists() or list(output.iterdir()) == []


def frontend() -> ModuleType:
    """rampart_frontend.py under its own name: cookiecutter's import of it (use_frontend) stays untouched."""
    spec = importlib.util.spec_from_file_location("frontend_under_test", REPO_ROOT / "rampart_frontend.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copier_pin() -> str:
    """The copier version the template's own pyproject.toml pins."""
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [pin for group in dependencies["dependency-groups"].values() for pin in group]
    pins += dependencies["project"].get("dependencies", [])
    [copier_version] = [pin.removeprefix("copier==") for pin in pins if str(pin).startswith("copier==")]
    return str(copier_version)


def test_install_hints_pin_the_copier_the_template_is_tested_with() -> None:
    pin = copier_pin()
    assert pin == frontend().COPIER_VERSION
    assert f"copier=={pin}" in frontend().COPIER_MISSING
    for page in ("README.md", "docs/getting-started.md"):
        text = (REPO_ROOT / page).read_text(encoding="utf-8")
        hints = re.findall(r"pipx inject cookiecutter copier[^\s`]*", text)
        assert hints, f"{page} does not say how to add copier to cookiecutter"
        assert set(hints) == {f"pipx inject cookiecutter copier=={pin}"}, page


def rendered_post_gen_hook(tmp_path: Path, template: str) -> ModuleType:
    """hooks/post_gen_project.py rendered by cookiecutter's Jinja for `template` as typed, imported."""
    context = {
        "cookiecutter": {
            "project_name": "Acme Service",
            "_template": template,
            "_checkout": None,
            "_extensions": ["rampart_frontend.RampartExtension"],
        }
    }
    source = (REPO_ROOT / "hooks" / "post_gen_project.py").read_text(encoding="utf-8")
    rendered = tmp_path / "rendered_post_gen_project.py"
    rendered.write_text(
        create_env_with_context(context).from_string(source).render(**context), encoding="utf-8"
    )
    spec = importlib.util.spec_from_file_location("rendered_post_gen_project", rendered)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("typed", "durable"),
    [
        ("gh:acme/rampart", "https://github.com/acme/rampart.git"),
        ("git+file:///srv/git/rampart", "git+file:///srv/git/rampart"),
        (
            "https://gitlab.example.com/platform/rampart.git",
            "https://gitlab.example.com/platform/rampart.git",
        ),
        (".", str(REPO_ROOT)),
        ("../rampart", str(REPO_ROOT)),
    ],
)
def test_answers_point_at_a_durable_source(
    use_frontend: Callable[[Path | None], None], tmp_path: Path, typed: str, durable: str
) -> None:
    use_frontend(REPO_ROOT)
    hook = rendered_post_gen_hook(tmp_path, typed)
    assert hook.TEMPLATE_ROOT == REPO_ROOT
    assert hook.durable_source() == durable


def test_src_path_rewrite_keeps_the_rest_of_the_answers_file(
    use_frontend: Callable[[Path | None], None], tmp_path: Path
) -> None:
    use_frontend(REPO_ROOT)
    hook = rendered_post_gen_hook(tmp_path, "gh:acme/rampart")
    answers_file = tmp_path / ANSWERS_FILE
    before = (
        "# Changes here will be overwritten by Copier\n_commit: v1.2.0\n"
        "_src_path: /home/zoë/a very long path with spaces that copier's YAML dumper wraps onto\n"
        "    the next line\nauth: api_key\r\nproject_name: Acme Service\n"
    )
    answers_file.write_bytes(before.encode("utf-8"))
    hook.rewrite_src_path(answers_file, "https://github.com/acme/rampart.git")
    after = answers_file.read_bytes().decode("utf-8")
    assert after == before.replace(
        "/home/zoë/a very long path with spaces that copier's YAML dumper wraps onto\n    the next line",
        "https://github.com/acme/rampart.git",
    )
