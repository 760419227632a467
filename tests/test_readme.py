"""Level 5: the READMEs' commands, run as written where they can run offline.

The template README's "Generate a service" block runs from a clone and from a git URL of it (only the
answering is automated: `--defaults` for copier, `--no-input` for cookiecutter); the generated README's
first commit is made as it says, and the first `make update` then works.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from variants import REPO_ROOT

pytestmark = pytest.mark.update

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Rampart Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Rampart Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def bash_block(markdown: str, heading: str) -> list[str]:
    """The command lines (comments cut) of the first ```bash block after ``heading``."""
    section = markdown[markdown.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, f"no bash block after {heading!r}"
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block[1].splitlines()]
    return [line for line in lines if line]


def newest_release(repo: Path) -> str:
    tags = subprocess.run(
        ["git", "-C", str(repo), "tag", "--list", "v*", "--sort=-version:refname"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not tags:
        pytest.fail("no v* release tag: `make venv` (scripts/release_tags.py) adds them to a clone")
    return tags[0]


def answered(line: str) -> str:
    """The README's line with the answering automated, nothing else changed."""
    line = line.replace("copier copy ", "copier copy --defaults ", 1)
    return line.replace("cookiecutter ", "cookiecutter --no-input ", 1)


def tool_env() -> dict[str, str]:
    """This repository's venv on PATH: what `make venv` gives a clone (building the clone's own would take
    a minute), with a git identity for the commits."""
    return {
        **os.environ,
        **GIT_IDENTITY,
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }


def run(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{line}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def answers(project: Path) -> dict[str, str]:
    loaded: dict[str, str] = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone of this repository (committed HEAD and its release tags), as a user makes one."""
    clone = tmp_path / "rampart"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    return clone


@pytest.mark.parametrize("source", ["clone", "git URL"])
def test_generate_commands_run_as_written(clone: Path, source: str) -> None:
    lines = bash_block((REPO_ROOT / "README.md").read_text(encoding="utf-8"), "## Generate a service")
    make_venv, set_source, *commands = lines
    assert make_venv.startswith("make venv && PATH=$PWD/.venv/bin:$PATH")
    assert set_source == "RAMPART=$PWD"
    # The venv `make venv` makes is this one; the clone's own would take a minute to build.
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    if source == "git URL":
        set_source = f"RAMPART={shlex.quote('git+file://' + str(clone))}"
    tag = newest_release(clone)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    made = clone.parent / "my-service"
    for line in commands:
        shutil.rmtree(made, ignore_errors=True)
        run(f"{set_source}\n{answered(line)}", clone, env)
        if "cookiecutter" in line:
            made = clone.parent / "acme-service"
            assert (made / "pyproject.toml").is_file()
        elif "--vcs-ref HEAD" in line:
            described = answers(made)["_commit"]
            assert described.startswith(f"{tag}-") or described == tag
            assert head.startswith(described.rpartition("-g")[2]) or described == tag
        else:
            assert answers(made)["_commit"] == tag


def test_first_commit_as_the_generated_readme_says_then_make_update(clone: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    # The README of this commit says what to do; a newcomer's project comes from the newest release.
    current = tmp_path / "current"
    run(f"copier copy --trust --defaults --vcs-ref HEAD {shlex.quote(str(clone))} {current}", tmp_path, env)
    walkthrough = bash_block((current / "README.md").read_text(encoding="utf-8"), "## From `copier copy`")
    [first_commit] = [line for line in walkthrough if line.startswith("git init")]

    project = tmp_path / "my-service"
    run(f"copier copy --trust --defaults {shlex.quote(str(clone))} {project}", tmp_path, env)
    run(first_commit, project, env)
    assert run("git status --porcelain", project, env).stdout == ""
    update = run("make update", project, env)
    assert "conflict" not in (update.stdout + update.stderr).lower()
    assert run("git status --porcelain", project, env).stdout == ""
