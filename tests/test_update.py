"""Level 5 of the test ladder: updates never lose a user's work, and `make update` behaves on every path.

The template under test is a throwaway clone of this repository whose HEAD is the working tree, tagged as
CHANGELOG.md's newest version (what the release will be), so copier sees a real version step and runs the
migrations on the way. Each pairwise variant is copied at the OLDEST `v*` tag, committed, edited the way
users edit (a route module with its test, a setting default, a pinned dependency locked in uv.lock, README,
a deleted optional file, their runbook), committed, and updated to HEAD the way docs/updating.md says for
that release (copier, then `scripts/update.sh --relock`). The updated project must keep every edit and its
locked pin, hold no conflict markers or `.rej` files, record the new version, lint clean and import its
tests; a subset that covers every answer of every question also passes its whole `make test` (all 11
would add ~10 minutes on 2 cores).

The generated `make update` is tested on its own paths: no copier, outside git, a staged `.rej`, a project
made from an untagged commit (the clone's HEAD tag removed), answer changes on an edited project one after
another, a moved template source, and the pull request body of a conflicted update.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

from rendering import record, render
from test_smoke import DEV_BIN, clean_env, interpreter, run, tail
from variants import DEFAULT_VARIANT, OPTIONS, PAIRWISE_VARIANTS, REPO_ROOT, variant_id

pytestmark = pytest.mark.update

GIT_IDENTITY = ["-c", "user.name=Rampart Tests", "-c", "user.email=tests@example.invalid"]
ROTA_LINE = "Our on-call rota lives in the team wiki (page: payments-on-call)."
EXTRA_DEPENDENCY = "humanize==4.17.0"
# The one release whose projects keep their runbook in docs/ (v0.3.0 moved it back to the root).
RUNBOOK_IN_DOCS = "v0.2.0"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{result.stdout}{result.stderr}"
    return result.stdout


def release_tags(repo: Path) -> list[str]:
    return git(repo, "tag", "--list", "v*", "--sort=v:refname").split()


def changelog_releases() -> list[tuple[str, str | None]]:
    """(version, commit) of each CHANGELOG heading, newest first; the newest has no commit yet."""
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (v\d+\.\d+\.\d+)(?:.*?commit ([0-9a-f]{7,40}))?", changelog, re.MULTILINE)
    assert headings, "CHANGELOG.md has no '## vX.Y.Z' heading"
    return [(version, commit or None) for version, commit in headings]


def changelog_version() -> str:
    return changelog_releases()[0][0]


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repo whose HEAD is the working tree, tagged as CHANGELOG's newest version.

    A release tag the clone lacks (a checkout that did not fetch tags) is recreated at the commit its
    CHANGELOG heading names, so the test always starts from the real oldest release.
    """
    repo = tmp_path_factory.mktemp("template-repo") / "rampart"
    git(REPO_ROOT, "clone", "--quiet", "--no-local", str(REPO_ROOT), str(repo))
    restore = [sys.executable, str(REPO_ROOT / "scripts" / "release_tags.py"), "--repo", str(repo)]
    subprocess.run(restore, check=True, capture_output=True)
    for tracked in git(repo, "ls-files", "-z").split("\0"):
        if tracked:
            (repo / tracked).unlink(missing_ok=True)
    working = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, working):
        source = REPO_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo, "add", "--all")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "--quiet", "-m", "The working tree under test")
    version = changelog_version()
    if version not in git(repo, "tag", "--points-at", "HEAD").split():
        older = release_tags(repo)
        assert version not in older or version == older[-1], f"{version} is already an older release"
        git(repo, "tag", "--force", "-a", version, "-m", f"Rampart {version} (under test)")
    assert len(release_tags(repo)) >= 2, "level 5 needs an older release to update from"
    return repo


def oldest_release(repo: Path) -> str:
    return release_tags(repo)[0]


def copy_at(template: Path, ref: str, answers: dict[str, Any], dest: Path) -> Path:
    copier.run_copy(
        str(template), str(dest), data=answers, defaults=True, unsafe=True, quiet=True, vcs_ref=ref
    )
    git(dest, "init", "--quiet", "--initial-branch=main")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "-m", f"Generated from Rampart {ref}")
    return dest


def package_of(project: Path) -> str:
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return str(answers["package_name"])


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def add_rota_line(runbook: Path) -> None:
    """A team's own line in its runbook, before the first section."""
    text = runbook.read_text(encoding="utf-8")
    first_section = text.index("\n## ")
    runbook.write_text(text[:first_section] + f"\n{ROTA_LINE}\n" + text[first_section:], encoding="utf-8")


def make_user_edits(project: Path) -> dict[str, str]:
    """Typical edits of a team's first weeks; returns {path: text that must survive the update}."""
    package = package_of(project)
    route = project / "src" / package / "api" / "reports.py"
    route.write_text(
        '"""Our own route module: daily report stubs."""\n\n'
        "from fastapi import APIRouter\n\n"
        'router = APIRouter(prefix="/reports", tags=["reports"])\n\n\n'
        '@router.get("/daily")\n'
        "async def daily_report() -> dict[str, str]:\n"
        '    return {"report": "daily"}\n',
        encoding="utf-8",
    )
    route_test = project / "tests" / "test_reports.py"
    route_test.write_text(
        '"""Tests of our own route module."""\n\n'
        "import pytest\n"
        "from fastapi import FastAPI\n"
        "from httpx import ASGITransport, AsyncClient\n\n"
        f"from {package}.api.reports import router\n\n"
        "pytestmark = pytest.mark.anyio\n\n\n"
        "async def test_daily_report() -> None:\n"
        "    app = FastAPI()\n"
        "    app.include_router(router)\n"
        '    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:\n'
        '        assert (await client.get("/reports/daily")).json() == {"report": "daily"}\n',
        encoding="utf-8",
    )
    settings = project / "src" / package / "settings.py"
    setting_line = "upstream_max_wait_seconds: float = Field(default=5.0, ge=0, le=300)"
    replace_once(settings, setting_line.replace("5.0", "10.0"), setting_line)
    add_dependency(project, EXTRA_DEPENDENCY)
    lock_dependencies(project)
    readme = project / "README.md"
    readme.write_text(
        readme.read_text(encoding="utf-8") + "\n## Our notes\n\nAsk #payments.\n", encoding="utf-8"
    )
    (project / ".pre-commit-config.yaml").unlink()
    add_rota_line(project / "RUNBOOK.md")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Our edits")
    return {
        f"src/{package}/api/reports.py": 'router = APIRouter(prefix="/reports"',
        "tests/test_reports.py": "def test_daily_report",
        f"src/{package}/settings.py": setting_line,
        "pyproject.toml": EXTRA_DEPENDENCY,
        "README.md": "## Our notes\n\nAsk #payments.\n",
        "RUNBOOK.md": ROTA_LINE,
    }


def add_dependency(project: Path, requirement: str) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    dependencies = re.search(r"^dependencies = \[\n(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert dependencies, "pyproject.toml has no multi-line dependencies list"
    added = f'  "{requirement}",\n'
    pyproject.write_text(text[: dependencies.end(1)] + added + text[dependencies.end(1) :], encoding="utf-8")


def lock_dependencies(project: Path) -> None:
    """``uv lock``, as a team does (its CI wants uv.lock committed) whether or not the template ships one."""
    result = run([str(DEV_BIN / "uv"), "lock", "--quiet"], project, clean_env())
    assert result.returncode == 0, f"uv lock failed:\n{tail(result)}"


def locked_versions(project: Path) -> dict[str, str]:
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    return {package["name"]: package.get("version", "") for package in lock["package"]}


def copier_update(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(DEV_BIN / "copier"), "update", "--trust", "--defaults", "--vcs-ref", "HEAD", *extra]
    return run(command, project, clean_env())


def leftovers(project: Path) -> list[str]:
    """Conflict traces anywhere in the project: unmerged paths, inline markers, .rej files."""
    unmerged = git(project, "diff", "--name-only", "--diff-filter=U").split()
    markers = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file()
        and ".git" not in path.parts
        and re.search(rb"^(<<<<<<<|>>>>>>>) ", path.read_bytes(), re.MULTILINE)
    ]
    rejects = [str(path.relative_to(project)) for path in project.rglob("*.rej")]
    return unmerged + markers + rejects


def value_cover(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few variants of ``variants`` in which every answer of every question appears at least once."""
    missing = {(name, value) for name, values in OPTIONS.items() for value in values}
    chosen: list[dict[str, Any]] = []
    while missing:
        best = max(variants, key=lambda variant: len(missing & set(variant.items())))
        chosen.append(best)
        missing -= set(best.items())
    return chosen


FULL_TEST_IDS = {variant_id(variant) for variant in value_cover(PAIRWISE_VARIANTS)}


@pytest.mark.parametrize("answers", PAIRWISE_VARIANTS, ids=variant_id)
def test_update_from_oldest_release_keeps_user_edits(
    answers: dict[str, Any], template_repo: Path, tmp_path: Path
) -> None:
    project = copy_at(template_repo, oldest_release(template_repo), answers, tmp_path / "service")
    kept = make_user_edits(project)

    # The oldest release has no make update: its first update is copier's, then the lock (docs/updating.md).
    result = copier_update(project)
    assert result.returncode == 0, f"copier update failed:\n{tail(result)}"
    relock = run(["scripts/update.sh", "--relock"], project, clean_env(UV=str(DEV_BIN / "uv")))
    assert relock.returncode == 0, f"re-locking failed:\n{tail(relock)}"

    assert not leftovers(project), (
        f"conflicts where the user did not touch the template's lines: {leftovers(project)}"
    )
    name, version = EXTRA_DEPENDENCY.split("==")
    assert locked_versions(project).get(name) == version, "the user's pinned dependency left uv.lock"

    for path, text in kept.items():
        assert (project / path).is_file(), f"{path} is gone after the update"
        assert text in (project / path).read_text(encoding="utf-8"), f"the user's edit of {path} is lost"
    assert not (project / ".pre-commit-config.yaml").exists(), "a file the user deleted came back"
    assert not (project / "docs" / "runbook.md").exists(), "the runbook's moves left docs/runbook.md behind"
    answers_file = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert answers_file["_commit"] == changelog_version()
    for name, value in answers.items():
        assert answers_file[name] == value, f"the answer {name} changed in the update"

    # The update is a reviewable commit; the generated checker agrees there is nothing left to resolve.
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Update from the template")
    check = run(["scripts/update.sh", "--check"], project, clean_env(UV=str(DEV_BIN / "uv")))
    assert check.returncode == 0, tail(check)

    python = interpreter(str(answers["python_version"])) or "python3"
    env = clean_env(PYTHON=python, PATH=f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}")
    targets = ["install", "lint", "test"] if variant_id(answers) in FULL_TEST_IDS else ["install", "lint"]
    for target in targets:
        result = run(["make", "--no-print-directory", target], project, env)
        assert result.returncode == 0, f"make {target} failed on the updated project:\n{tail(result)}"
    if "test" not in targets:
        result = run([".venv/bin/python", "-m", "pytest", "--collect-only", "-q"], project, env)
        assert result.returncode == 0, f"the updated project's tests do not import:\n{tail(result)}"
    record("updates", variant_id(answers))


def first_changed_line(old: Path, new: Path) -> tuple[str, str]:
    """A (path, line) of the old render that the new template version changes."""
    for path in sorted(old.rglob("*")):
        relative = path.relative_to(old)
        skipped = ".git" in relative.parts or relative.name == ".copier-answers.yml"
        if skipped or not path.is_file() or not (new / relative).is_file():
            continue
        old_lines = path.read_text(encoding="utf-8").splitlines()
        new_lines = set((new / relative).read_text(encoding="utf-8").splitlines())
        for line in old_lines:
            if line.strip() and line not in new_lines and old_lines.count(line) == 1:
                return str(relative), line
    pytest.fail("the newest release changes no line of an existing file: nothing can conflict")


def test_conflicting_edit_gets_markers_and_fails_update_check(template_repo: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    copier.run_copy(str(template_repo), str(fresh), defaults=True, unsafe=True, quiet=True, vcs_ref="HEAD")
    project = copy_at(
        template_repo, oldest_release(template_repo), dict(DEFAULT_VARIANT), tmp_path / "service"
    )
    path, line = first_changed_line(project, fresh)
    replace_once(project / path, line, "# our team's own version of this line")
    git(project, "commit", "--quiet", "--all", "-m", "Our edit of a line the template changes too")

    result = copier_update(project)
    assert result.returncode == 0, f"copier update failed:\n{tail(result)}"  # copier says 0 on conflicts

    text = (project / path).read_text(encoding="utf-8")
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text, text
    assert "# our team's own version of this line" in text, "the user's side of the conflict is lost"
    check = run(["make", "--no-print-directory", "update-check"], project, clean_env())
    assert check.returncode != 0, "make update-check passed with conflicts left"
    assert path in check.stderr, f"update-check does not name {path}:\n{tail(check)}"

    # What the update workflow puts in its pull request: the conflict, the CHANGELOG sections crossed.
    oldest = oldest_release(template_repo)
    body = run(["scripts/update.sh", "--summary", oldest], project, clean_env())
    assert body.returncode == 0, tail(body)
    assert f"- `{path}`" in body.stdout, body.stdout
    crossed = [version for version, _ in changelog_releases() if version != oldest]
    for version in crossed:
        assert f"### {version}" in body.stdout, f"the pull request body lacks the {version} section"
    assert f"### {oldest}" not in body.stdout, "the body repeats the release the project already had"


def test_make_update_refuses_a_dirty_tree_and_reports_up_to_date(template_repo: Path, tmp_path: Path) -> None:
    project = copy_at(template_repo, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "service")
    env = clean_env(COPIER=str(DEV_BIN / "copier"))
    readme = project / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "uncommitted\n", encoding="utf-8")
    before = readme.read_text(encoding="utf-8")

    dirty = run(["make", "--no-print-directory", "update", "REF=HEAD"], project, env)
    assert dirty.returncode != 0, "make update ran on a dirty tree"
    assert "uncommitted changes" in dirty.stderr and "README.md" in dirty.stderr, tail(dirty)
    assert readme.read_text(encoding="utf-8") == before, "the refused update touched the work tree"

    git(project, "checkout", "--", "README.md")
    clean = run(["make", "--no-print-directory", "update", "REF=HEAD"], project, env)
    assert clean.returncode == 0, tail(clean)
    assert "already up to date" in clean.stdout, tail(clean)
    assert not git(project, "status", "--porcelain")


def runbook_of(project: Path) -> str:
    return (project / "RUNBOOK.md").read_text(encoding="utf-8")


def assert_untouched_runbook_becomes_the_new_one(template_repo: Path, release: str, dest: Path) -> None:
    fresh = copy_at(template_repo, "HEAD", dict(DEFAULT_VARIANT), dest / "fresh")
    untouched = copy_at(template_repo, release, dict(DEFAULT_VARIANT), dest / "untouched")
    result = copier_update(untouched)
    assert result.returncode == 0, tail(result)
    assert runbook_of(untouched) == runbook_of(fresh), "an unedited runbook must become the new template's"
    assert not (untouched / "docs" / "runbook.md").exists()


def assert_deleted_runbook_stays_deleted(template_repo: Path, release: str, runbook: str, dest: Path) -> None:
    deleted = copy_at(template_repo, release, dict(DEFAULT_VARIANT), dest)
    git(deleted, "rm", "--quiet", runbook)
    git(deleted, "commit", "--quiet", "-m", "We keep our runbook elsewhere")
    result = copier_update(deleted)
    assert result.returncode == 0, tail(result)
    assert not (deleted / "RUNBOOK.md").exists() and not (deleted / "docs" / "runbook.md").exists()
    assert not leftovers(deleted)


def test_runbook_from_the_oldest_release_stays_in_place(template_repo: Path, tmp_path: Path) -> None:
    """v0.1.0 had RUNBOOK.md where v0.3.0 has it: v0.2.0's move does not apply, copier merges in place."""
    oldest = oldest_release(template_repo)
    assert_untouched_runbook_becomes_the_new_one(template_repo, oldest, tmp_path)
    assert_deleted_runbook_stays_deleted(template_repo, oldest, "RUNBOOK.md", tmp_path / "deleted")


def test_migration_moves_the_runbook_back_with_its_edits(template_repo: Path, tmp_path: Path) -> None:
    """From v0.2.0 (runbook in docs/) the v0.3.0 migration carries edits, or a deletion, to RUNBOOK.md."""
    assert RUNBOOK_IN_DOCS in release_tags(template_repo), f"level 5 needs the {RUNBOOK_IN_DOCS} release"
    edited = copy_at(template_repo, RUNBOOK_IN_DOCS, dict(DEFAULT_VARIANT), tmp_path / "edited")
    in_docs = edited / "docs" / "runbook.md"
    add_rota_line(in_docs)
    git(edited, "commit", "--quiet", "--all", "-m", "Our on-call rota")
    result = copier_update(edited)
    assert result.returncode == 0, tail(result)
    assert ROTA_LINE in runbook_of(edited), "the edit of docs/runbook.md did not move to RUNBOOK.md"
    assert not in_docs.exists(), "docs/runbook.md is still there"
    assert not leftovers(edited)
    assert "moved to RUNBOOK.md with your edits" in result.stdout, tail(result)
    fresh = copy_at(template_repo, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "fresh")
    # Apart from the user's line, the runbook is the new template's.
    assert runbook_of(edited).replace(f"\n{ROTA_LINE}\n", "", 1) == runbook_of(fresh)

    assert_untouched_runbook_becomes_the_new_one(template_repo, RUNBOOK_IN_DOCS, tmp_path / "untouched")
    deleted = tmp_path / "deleted"
    assert_deleted_runbook_stays_deleted(template_repo, RUNBOOK_IN_DOCS, "docs/runbook.md", deleted)


def run_bounded(
    command: list[str], cwd: Path, env: dict[str, str], seconds: int
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own process group; one still running after ``seconds`` is killed whole."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"{' '.join(command)} still ran after {seconds} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def path_without_copier(folder: Path) -> str:
    """A PATH with the everyday tools the update script uses and neither copier nor uvx."""
    folder.mkdir()
    for name in ("bash", "git", "make", "sed", "grep", "cat", "rm", "mktemp", "sort", "awk", "find", "cmp"):
        found = shutil.which(name)
        assert found, f"{name} is not installed"
        (folder / name).symlink_to(found)
    return str(folder)


def test_make_update_without_copier_stops_once_with_an_install_hint(
    template_repo: Path, tmp_path: Path
) -> None:
    project = copy_at(template_repo, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "service")
    env = clean_env(PATH=path_without_copier(tmp_path / "bin"))
    env.pop("COPIER", None)
    env.pop("UV", None)

    result = run_bounded(["make", "--no-print-directory", "update"], project, env, seconds=120)

    assert result.returncode != 0, tail(result)
    assert result.stderr.count("copier is not installed") == 1, tail(result)
    assert "pipx install copier==" in result.stderr, tail(result)
    assert not git(project, "status", "--porcelain"), "the refused update touched the work tree"


def project_with_update_script(folder: Path) -> Path:
    """A git repository holding only the generated update script: enough for its --check."""
    scripts = folder / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "template" / "scripts" / "update.sh", scripts / "update.sh")
    return folder


def test_update_check_outside_git_says_so(tmp_path: Path) -> None:
    folder = project_with_update_script(tmp_path / "not-a-repository")
    env = clean_env(GIT_CEILING_DIRECTORIES=str(tmp_path))

    result = run(["scripts/update.sh", "--check"], folder, env)

    assert result.returncode == 2, tail(result)
    assert "not inside a git work tree" in result.stderr, tail(result)
    assert "usage: git" not in result.stdout + result.stderr, "git's usage text instead of a message"


def test_update_check_fails_on_a_staged_rej_file(tmp_path: Path) -> None:
    project = project_with_update_script(tmp_path / "service")
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Generated")
    (project / "README.md.rej").write_text("@@ -1 +1 @@\n-old line\n+new line\n", encoding="utf-8")
    git(project, "add", "README.md.rej")

    result = run(["scripts/update.sh", "--check"], project, clean_env())

    assert result.returncode == 1, tail(result)
    assert "README.md.rej" in result.stderr, tail(result)


def documented_commands(heading: str) -> list[str]:
    """The commands of the first code block under ``heading`` in docs/updating.md, comments dropped."""
    page = (REPO_ROOT / "docs" / "updating.md").read_text(encoding="utf-8")
    section = page.split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, f"no bash block under {heading!r} in docs/updating.md"
    return [
        line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()
    ]


def test_first_update_of_a_v0_1_0_project_runs_as_documented(template_repo: Path, tmp_path: Path) -> None:
    oldest = oldest_release(template_repo)
    assert oldest == "v0.1.0", "the first-update section of docs/updating.md is written for v0.1.0"
    project = copy_at(template_repo, oldest, dict(DEFAULT_VARIANT), tmp_path / "service")
    assert not (project / "scripts" / "update.sh").exists(), "v0.1.0 has no update script: nothing to prove"
    # uv on PATH, as after the project's own `make install`: update-check now checks the shipped uv.lock.
    env = clean_env(UV=str(DEV_BIN / "uv"), PATH=f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}")

    for command in documented_commands("## The first update of a v0.1.0 project"):
        words = command.split()
        if words[0] == "copier":
            words[0] = str(DEV_BIN / "copier")
        result = run(words, project, env)
        assert result.returncode == 0, f"{command}:\n{tail(result)}"
        if words[0] == "git":
            assert not result.stdout, "the documented status check found a dirty tree"

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert answers["_commit"] == changelog_version()
    assert (project / "scripts" / "update.sh").is_file()


def test_generated_readme_runs_copier_update_with_trust() -> None:
    readme = (render(dict(DEFAULT_VARIANT)) / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"copier update[^`\n]*", readme)
    assert commands, "the generated README does not say how to update"
    assert all("--trust" in command for command in commands), commands
    assert "make update" in readme and "copier recopy" in readme


def answers_in(project: Path) -> dict[str, Any]:
    answers: dict[str, Any] = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    return answers


def commit_probe(template: Path, name: str, tag: str | None = None) -> None:
    """A template commit that adds ``name`` to the rendered tree; a release when ``tag`` is given."""
    (template / "template" / name).write_text(f"{name} is rendered\n", encoding="utf-8")
    git(template, "add", "--all")
    git(template, "commit", "--quiet", "-m", f"Add {name}")
    if tag:
        git(template, "tag", "-a", tag, "-m", f"Rampart {tag}")


def make_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``make`` in the project, with copier and uv on PATH as a user has them."""
    env = clean_env(PATH=f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}")
    return run(["make", "--no-print-directory", *args], project, env)


def commit_update(project: Path) -> None:
    assert not leftovers(project), leftovers(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Update from the template")


def test_project_from_an_untagged_commit_updates_to_the_next_release_and_to_head(
    template_repo: Path, tmp_path: Path
) -> None:
    """The template's HEAD is not a release here: the project records ``vX.Y.Z-N-g<hash>``."""
    template = tmp_path / "rampart"
    git(tmp_path, "clone", "--quiet", "--no-local", str(template_repo), str(template))
    next_release = changelog_version()
    git(template, "tag", "--delete", next_release)
    project = copy_at(template, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "service")
    made_at = answers_in(project)["_commit"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+-\d+-g[0-9a-f]+", made_at), made_at
    add_dependency(project, EXTRA_DEPENDENCY)
    lock_dependencies(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "Our own pinned dependency, locked")
    name, version = EXTRA_DEPENDENCY.split("==")

    nothing_newer = make_in(project, "update")
    assert nothing_newer.returncode == 0, tail(nothing_newer)
    assert "past the newest release" in nothing_newer.stdout, tail(nothing_newer)
    assert not git(project, "status", "--porcelain")

    answer_change = make_in(project, "update", "DATA=redis=true")
    assert answer_change.returncode == 0, tail(answer_change)
    assert answers_in(project)["_commit"] == made_at and answers_in(project)["redis"] is True
    assert (project / "src" / package_of(project) / "cache.py").is_file(), "redis=true added no cache.py"
    assert "re-locked" in answer_change.stdout, tail(answer_change)
    assert locked_versions(project).get(name) == version, "the user's pinned dependency left uv.lock"
    assert "redis" in locked_versions(project), "the lock lacks the dependency redis=true added"
    commit_update(project)

    commit_probe(template, "NEXT_RELEASE.md", tag=next_release)
    released = make_in(project, "update")
    assert released.returncode == 0, tail(released)
    assert answers_in(project)["_commit"] == next_release
    assert (project / "NEXT_RELEASE.md").is_file() and answers_in(project)["redis"] is True
    commit_update(project)

    commit_probe(template, "AFTER_RELEASE.md")
    up_to_date = make_in(project, "update")
    assert "already up to date with the newest release" in up_to_date.stdout, tail(up_to_date)
    head = make_in(project, "update", "REF=HEAD")
    assert head.returncode == 0, tail(head)
    assert answers_in(project)["_commit"].startswith(f"{next_release}-1-g")
    assert (project / "AFTER_RELEASE.md").is_file()
    commit_update(project)
    past = make_in(project, "update")
    assert past.returncode == 0 and "past the newest release" in past.stdout, tail(past)
    assert locked_versions(project).get(name) == version, "an update moved the user's pinned dependency"

    add_dependency(project, "pyjwt==2.9.0")
    git(project, "commit", "--quiet", "--all", "-m", "A dependency added without re-locking")
    stale = make_in(project, "update-check")
    assert stale.returncode != 0, "make update-check passed with a stale uv.lock"
    assert "uv.lock does not match pyproject.toml" in stale.stderr, tail(stale)


TEAM_JOB = """
  our-contract-tests:
    name: our contract tests
    runs-on: ubuntu-24.04
    timeout-minutes: 10
    steps:
      - run: echo "the team's own job"
"""


def test_answer_change_names_the_edited_files_it_deletes(template_repo: Path, tmp_path: Path) -> None:
    project = copy_at(template_repo, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "service")
    ci = project / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text(encoding="utf-8") + TEAM_JOB, encoding="utf-8")
    git(project, "commit", "--quiet", "--all", "-m", "Our own CI job")

    result = make_in(project, "update", "DATA=ci=gitlab")

    assert result.returncode == 0, tail(result)
    warned, summary = result.stdout.split("update: deleted, although you had changed them", 1)
    assert "the update deletes these files you changed:\n  .github/workflows/ci.yml\n" in warned, warned
    assert "  .github/workflows/ci.yml" in summary, summary
    assert "release.yml" not in result.stdout, "an unedited file was reported as edited"
    assert not (project / ".github").exists() and (project / ".gitlab-ci.yml").is_file()
    assert "our-contract-tests" in git(project, "show", "HEAD:.github/workflows/ci.yml")
    assert answers_in(project)["ci"] == "gitlab" and not leftovers(project)


def test_moved_template_stops_update_with_the_documented_recovery(
    template_repo: Path, tmp_path: Path
) -> None:
    template = tmp_path / "rampart"
    git(tmp_path, "clone", "--quiet", "--no-local", str(template_repo), str(template))
    project = copy_at(template, "HEAD", dict(DEFAULT_VARIANT), tmp_path / "service")
    moved = template.rename(tmp_path / "platform-rampart")

    gone = make_in(project, "update")
    assert gone.returncode != 0, tail(gone)
    assert f"the template source {template} is gone" in gone.stderr, tail(gone)
    assert "_src_path" in gone.stderr and not git(project, "status", "--porcelain")

    answers_file = project / ".copier-answers.yml"
    text = answers_file.read_text(encoding="utf-8")
    answers_file.write_text(text.replace(f"_src_path: {template}", f"_src_path: {moved}"), encoding="utf-8")
    git(project, "commit", "--quiet", "--all", "-m", "The template moved")
    again = make_in(project, "update", "REF=HEAD")
    assert again.returncode == 0 and "already up to date" in again.stdout, tail(again)


# One edited project through every kind of answer change, in the order a team might make them.
ANSWER_CHANGES = [
    {"redis": True},
    {"database": "postgres"},
    {"database": "none"},
    {"redis": False},
    {"kubernetes": False},
    {"ci": "gitlab"},
    {"auth": "none"},
    {"sentry": True, "opentelemetry": True},
]
CACHE_NOTE = "\n\n# Our note: the cache keys are documented in the team wiki.\n"


def rendered_paths(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def project_paths(project: Path) -> set[str]:
    """The project's files as git sees them (ignored caches left out); uv.lock included, as the template
    ships one too."""
    listed = git(project, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    return {path for path in listed if path and (project / path).is_file()}


def test_answer_changes_on_an_edited_project_keep_edits_and_match_a_fresh_render(
    template_repo: Path, tmp_path: Path
) -> None:
    answers = dict(DEFAULT_VARIANT)
    project = copy_at(template_repo, "HEAD", answers, tmp_path / "service")
    kept = make_user_edits(project)
    added = {"src/" + package_of(project) + "/api/reports.py", "tests/test_reports.py"}
    cache = project / "src" / package_of(project) / "cache.py"
    name, version = EXTRA_DEPENDENCY.split("==")
    ruff = str(DEV_BIN / "ruff")

    for change in ANSWER_CHANGES:
        data = " ".join(f"{key}={str(value).lower()}" for key, value in change.items())
        result = make_in(project, "update", f"DATA={data}")
        assert result.returncode == 0, f"make update DATA={data}:\n{tail(result)}"
        answers.update(change)
        assert not leftovers(project), f"{data}: conflicts {leftovers(project)}"
        for path, text in kept.items():
            assert text in (project / path).read_text(encoding="utf-8"), f"{data}: the edit of {path} is lost"
        fresh = rendered_paths(render(answers)) - {".pre-commit-config.yaml"}
        assert project_paths(project) == fresh | added, f"{data}: not the files a fresh render has"
        assert locked_versions(project).get(name) == version, f"{data}: the pinned dependency left uv.lock"
        if change == {"redis": False}:
            assert f"these files you changed:\n  {cache.relative_to(project)}\n" in result.stdout, tail(
                result
            )
        for check in (["check", "."], ["format", "--check", "."]):
            linted = run([ruff, *check], project, clean_env())
            assert linted.returncode == 0, f"{data}: ruff {check[0]}:\n{tail(linted)}"
        commit_update(project)
        if change == {"redis": True}:
            cache.write_text(cache.read_text(encoding="utf-8") + CACHE_NOTE, encoding="utf-8")
            git(project, "commit", "--quiet", "--all", "-m", "Our note on the cache")

    python = interpreter(str(answers["python_version"])) or "python3"
    env = clean_env(PYTHON=python, PATH=f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}")
    for target in ("install", "lint", "typecheck", "test"):
        result = run(["make", "--no-print-directory", target], project, env)
        assert result.returncode == 0, f"make {target} failed after the answer changes:\n{tail(result)}"
