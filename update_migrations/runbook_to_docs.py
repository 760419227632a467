"""Copier migration for v0.2.0: RUNBOOK.md moved to docs/runbook.md; your edits move with it.

Copier deletes a file the new template no longer has and writes the new one fresh, so without this
migration the edits made to RUNBOOK.md would vanish from the work tree. Copier's own merge cannot follow a
rename, so this script does the three-way merge itself (hand-written: copier has no rename support):

  before  (run in the project, before copier touches it) renders RUNBOOK.md as the OLD template version
          made it (the merge base) and keeps it, with the project's RUNBOOK.md, in the git directory.
  after   (copier has written docs/runbook.md and removed RUNBOOK.md) merges the project's edits into
          docs/runbook.md with `git merge-file`. Conflicts get copier's own inline markers, so
          `make update-check` finds them. A project that had deleted RUNBOOK.md does not get it back.

Runs with copier's interpreter (`_copier_python`), so copier and PyYAML are importable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import copier
import yaml

OLD_PATH = Path("RUNBOOK.md")
NEW_PATH = Path("docs/runbook.md")
ANSWERS_FILE = Path(".copier-answers.yml")


def state_dir() -> Path:
    """Where the stages hand files over: inside .git, so nothing shows up in the work tree or the diff."""
    git_dir = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(git_dir) / "rampart-migrations" / "runbook_to_docs"


def render_old_runbook(answers: dict[str, Any]) -> str:
    """RUNBOOK.md exactly as the template version recorded in the answers file rendered it."""
    data = {key: value for key, value in answers.items() if not key.startswith("_")}
    with tempfile.TemporaryDirectory(prefix="rampart-migration-") as scratch:
        copier.run_copy(
            str(answers["_src_path"]),
            scratch,
            data=data,
            vcs_ref=str(answers["_commit"]),
            defaults=True,
            overwrite=True,
            unsafe=True,
            quiet=True,
        )
        rendered = Path(scratch, OLD_PATH)
        return rendered.read_text(encoding="utf-8") if rendered.is_file() else ""


def before(state: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    if not OLD_PATH.is_file():
        # Deleted on purpose (or never there): remember, so the new location is not forced on the project.
        (state / "absent").touch()
        return
    answers = yaml.safe_load(ANSWERS_FILE.read_text(encoding="utf-8"))
    (state / "base.md").write_text(render_old_runbook(answers), encoding="utf-8")
    shutil.copyfile(OLD_PATH, state / "ours.md")


def after(state: Path) -> int:
    if not state.is_dir():
        return 0
    try:
        if (state / "absent").exists():
            if NEW_PATH.is_file() and not OLD_PATH.exists():
                NEW_PATH.unlink()
                print(f"migration v0.2.0: RUNBOOK.md was deleted here, so {NEW_PATH} is not added.")
            return 0
        base, ours = state / "base.md", state / "ours.md"
        if ours.read_bytes() == base.read_bytes() or not NEW_PATH.is_file():
            return 0  # no local edits: the template's docs/runbook.md is the whole story
        merged = state / "merged.md"
        shutil.copyfile(ours, merged)
        labels = ["-L", "before updating", "-L", "last update", "-L", "after updating"]
        result = subprocess.run(["git", "merge-file", *labels, str(merged), str(base), str(NEW_PATH)])
        if result.returncode < 0 or result.returncode > 127:
            print("migration v0.2.0: git merge-file failed", file=sys.stderr)
            return 1
        shutil.copyfile(merged, NEW_PATH)
        OLD_PATH.unlink(missing_ok=True)
        if result.returncode:
            print(f"migration v0.2.0: your RUNBOOK.md edits conflict with the template's in {NEW_PATH}.")
        else:
            print(f"migration v0.2.0: RUNBOOK.md moved to {NEW_PATH} with your edits.")
        return 0
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage == "before":
        before(state_dir())
        return 0
    if stage == "after":
        return after(state_dir())
    print(f"usage: {sys.argv[0]} before|after", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
