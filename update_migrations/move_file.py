"""Copier migration: a template file moved between versions; the project's edits move with it.

Used by ``_migrations`` in copier.yml as ``move_file.py before|after OLD NEW VERSION``: v0.2.0 moved
RUNBOOK.md to docs/runbook.md, v0.3.0 moved it back. Copier deletes a file the new template no longer has
and writes the new one fresh, so without a migration the edits made to the old file would vanish from the
work tree. Copier's own merge cannot follow a rename, so this script does the three-way merge itself
(hand-written: copier has no rename support):

  before  (run in the project, before copier touches it) renders the project as the template version
          recorded in its answers made it. If that version had no OLD (an update that starts before the
          file moved there), the migration does not apply and does nothing. Otherwise it keeps the
          rendered OLD (the merge base) and the project's OLD in the git directory.
  after   (copier has written NEW and removed OLD) merges the project's edits into NEW with
          `git merge-file`. Conflicts get copier's own inline markers, so `make update-check` finds them.
          A project that had deleted OLD does not get NEW.

Runs with copier's interpreter (``_copier_python``), so copier and PyYAML are importable.
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

ANSWERS_FILE = Path(".copier-answers.yml")


def state_dir(version: str) -> Path:
    """Where the stages hand files over: inside .git, so nothing shows up in the work tree or the diff."""
    git_dir = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(git_dir) / "rampart-migrations" / f"move-file-{version}"


def render_old(answers: dict[str, Any], path: Path) -> str | None:
    """``path`` exactly as the template version recorded in the answers file rendered it, or None."""
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
        rendered = Path(scratch, path)
        return rendered.read_text(encoding="utf-8") if rendered.is_file() else None


def before(state: Path, old: Path) -> None:
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    answers = yaml.safe_load(ANSWERS_FILE.read_text(encoding="utf-8"))
    base = render_old(answers, old)
    if base is None:
        (state / "not-applicable").touch()  # this project's version never had the file there
    elif not old.is_file():
        # Deleted on purpose: remember, so the new location is not forced on the project.
        (state / "absent").touch()
    else:
        (state / "base").write_text(base, encoding="utf-8")
        shutil.copyfile(old, state / "ours")


def after(state: Path, old: Path, new: Path, version: str) -> int:
    if not state.is_dir():
        return 0
    try:
        if (state / "not-applicable").exists():
            return 0
        if (state / "absent").exists():
            if new.is_file() and not old.exists():
                new.unlink()
                print(f"migration {version}: {old} was deleted here, so {new} is not added.")
            return 0
        base, ours = state / "base", state / "ours"
        if ours.read_bytes() == base.read_bytes() or not new.is_file():
            return 0  # no local edits: the template's new file is the whole story
        merged = state / "merged"
        shutil.copyfile(ours, merged)
        labels = ["-L", "before updating", "-L", "last update", "-L", "after updating"]
        result = subprocess.run(["git", "merge-file", *labels, str(merged), str(base), str(new)])
        if result.returncode < 0 or result.returncode > 127:
            print(f"migration {version}: git merge-file failed", file=sys.stderr)
            return 1
        shutil.copyfile(merged, new)
        old.unlink(missing_ok=True)
        if result.returncode:
            print(f"migration {version}: your {old} edits conflict with the template's in {new}.")
        else:
            print(f"migration {version}: {old} moved to {new} with your edits.")
        return 0
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("before", "after"):
        print(f"usage: {sys.argv[0]} before|after OLD NEW VERSION", file=sys.stderr)
        return 2
    stage, old, new, version = argv[0], Path(argv[1]), Path(argv[2]), argv[3]
    if stage == "before":
        before(state_dir(version), old)
        return 0
    return after(state_dir(version), old, new, version)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
