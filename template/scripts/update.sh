#!/usr/bin/env bash
# Pull the template's newer version into this project with `copier update`, safely, and report conflicts.
#
#   scripts/update.sh [--vcs-ref REF]   update (refuses a dirty tree), then check for conflicts
#   scripts/update.sh --check           only check: exit 1 when conflicts are left to resolve
#
# copier exits 0 even when it leaves conflicts behind, so the check looks for them itself: files git shows
# unmerged, inline conflict markers and `*.rej` files. `make update` / `make update-check` and the
# template-update workflow all run this script. COPIER overrides the copier command (default: `copier` on
# PATH, else a pinned copier through uvx).
set -euo pipefail

COPIER_VERSION=9.19.1
ANSWERS_FILE=.copier-answers.yml

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
}

die() {
  echo "update: $*" >&2
  exit 2
}

# Prints every path with an unresolved conflict, once each, sorted.
conflicts() {
  {
    git diff --name-only --diff-filter=U
    git grep --untracked -lE -e '^<<<<<<< ' -e '^>>>>>>> ' -- . || true
    git ls-files --others --exclude-standard -- '*.rej'
  } | sort -u
}

check() {
  local found
  found=$(conflicts)
  if [ -n "$found" ]; then
    echo "update: the template update conflicts with your edits in:" >&2
    while IFS= read -r path; do
      echo "  $path" >&2
      if [ -n "${GITHUB_ACTIONS:-}" ]; then
        echo "::error file=$path::template update conflicts with local edits here"
      fi
    done <<<"$found"
    cat >&2 <<'EOF'
Resolve each one: keep the lines you want between the <<<<<<< and >>>>>>> markers (the "before updating"
side is yours, the "after updating" side is the template's), delete the markers (and any .rej file once its
hunk is applied by hand), then `git add` the files. `make update-check` passes when nothing is left.
EOF
    return 1
  fi
  echo "update: no conflicts."
}

copier_cmd() {
  if [ -n "${COPIER:-}" ]; then
    # shellcheck disable=SC2086 # COPIER may hold a command with arguments, e.g. "pipx run copier".
    echo $COPIER
  elif command -v copier >/dev/null 2>&1; then
    echo copier
  elif command -v uvx >/dev/null 2>&1; then
    echo "uvx --from copier==$COPIER_VERSION copier"
  else
    die "copier is not installed: pipx install copier==$COPIER_VERSION (or uv tool install), or set COPIER"
  fi
}

update() {
  local before after
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "not a git repository: copier update needs one"
  [ -f "$ANSWERS_FILE" ] || die "no $ANSWERS_FILE here: run this from the project root"
  if [ -n "$(git status --porcelain)" ]; then
    git status --short >&2
    die "the work tree has uncommitted changes (above): commit or stash them first, so the update's changes
        can be reviewed (and undone) on their own"
  fi
  before=$(sed -n 's/^_commit: *//p' "$ANSWERS_FILE")
  # --trust: the template's migrations run; --defaults: keep every recorded answer; inline conflict markers.
  # shellcheck disable=SC2046 # the copier command is split into words on purpose.
  $(copier_cmd) update --trust --defaults --conflict inline "$@"
  after=$(sed -n 's/^_commit: *//p' "$ANSWERS_FILE")
  if [ "$before" = "$after" ] && [ -z "$(git status --porcelain)" ]; then
    echo "update: already up to date with the template ($before)."
    return 0
  fi
  echo "update: template $before -> $after. Review with \`git diff HEAD\`, run \`make check\`, then commit."
  check
}

case "${1:-}" in
  --check) check ;;
  -h | --help) usage ;;
  *) update "$@" ;;
esac
