"""Recreate the release tags (``v0.1.0`` ...) that a clone lacks, from the commits CHANGELOG.md names.

copier picks the template version from the repository's PEP 440 tags: without them ``copier copy`` records
a bare commit and ``copier update`` has no release to move between. Some ways of publishing a repository
drop tags (a mirror, a bundle, a CI checkout of one branch), so every released heading of CHANGELOG.md
names its commit (``## v0.2.0 (2026-11-23, commit 095d150)``) and this script, run by ``make venv``,
adds each missing tag at that commit. Existing tags are never moved; a commit that is not in this
clone's history (a shallow clone) is reported and skipped. Standard library only: it runs before the
venv exists.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

RELEASED = re.compile(r"^## (v\d+\.\d+\.\d+) \(.*?commit ([0-9a-f]{7,40})\)", re.MULTILINE)


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def released(changelog: Path) -> list[tuple[str, str]]:
    """(version, commit) of every released heading, newest first."""
    return RELEASED.findall(changelog.read_text(encoding="utf-8"))


def restore(repo: Path, changelog: Path) -> tuple[list[str], list[str]]:
    """Tags added, and problems (a named commit this clone does not have)."""
    existing = set(git(repo, "tag", "--list", "v*").stdout.split())
    added: list[str] = []
    problems: list[str] = []
    for version, commit in released(changelog):
        if version in existing:
            continue
        if git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            problems.append(f"{version}: commit {commit} is not in this clone's history")
            continue
        result = git(
            repo,
            "-c",
            "user.name=Rampart release tags",
            "-c",
            "user.email=release-tags@rampart.invalid",
            "tag",
            "--annotate",
            version,
            commit,
            "--message",
            f"Rampart {version} (restored from CHANGELOG.md)",
        )
        if result.returncode != 0:
            problems.append(f"{version}: git tag failed: {result.stderr.strip()}")
        else:
            added.append(version)
    return added, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--repo", type=Path, default=root, help="the git clone to tag (default: this one)")
    args = parser.parse_args(argv)
    if git(args.repo, "rev-parse", "--git-dir").returncode != 0:
        print(f"release tags: {args.repo} is not a git clone; nothing to do", file=sys.stderr)
        return 0
    added, problems = restore(args.repo, args.repo / "CHANGELOG.md")
    if added:
        print(f"release tags restored from CHANGELOG.md: {', '.join(added)}", file=sys.stderr)
    for problem in problems:  # a shallow clone: only updates from older releases need the tags
        print(f"release tags (warning): {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
