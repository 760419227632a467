#!/usr/bin/env bash
# Pull the template's newer version into this project with `copier update`, safely, and report conflicts.
#
#   scripts/update.sh [--vcs-ref REF] [--data NAME=VALUE]...
#       update to the newest release (or to REF, a tag or commit) and/or change answers; refuses a dirty
#       tree, names the files you changed that the update deletes, re-locks uv.lock, checks for conflicts
#   scripts/update.sh --check
#       only check: exit 1 while conflicts are left or uv.lock does not match pyproject.toml
#   scripts/update.sh --relock
#       only re-lock uv.lock as an update does, e.g. after running `copier update` yourself
#   scripts/update.sh --summary BEFORE
#       Markdown for a pull request after an update from BEFORE: the conflicts, the template's CHANGELOG
#
# An answer change without --vcs-ref keeps the template version the project has. copier exits 0 even when
# it leaves conflicts behind, so the check looks for them itself: files git shows unmerged, inline conflict
# markers and `*.rej` files. `make update` / `make update-check` and the template-update CI job all run this
# script. COPIER overrides the copier command (default: `copier` on PATH, else a pinned copier through
# uvx), UV the uv command (default: `uv` on PATH, else .venv/bin/uv).
set -euo pipefail
shopt -s inherit_errexit # commands inside $(...) stop at a failure too

COPIER_VERSION=9.19.1
ANSWERS_FILE=.copier-answers.yml
BODY_LIMIT=50000 # characters of CHANGELOG in a pull request body: GitHub refuses bodies much longer

usage() {
  sed -n '2,18s/^# \{0,1\}//p' "$0"
}

die() {
  echo "update: $*" >&2
  exit 2
}

require_git_work_tree() {
  git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    die "not inside a git work tree: run this from the project's root, which must be a git repository"
}

# Sets COPIER_CMD. Called directly, never in $(...), so that `die` ends the script, not a subshell.
find_copier() {
  if [ -n "${COPIER:-}" ]; then
    # COPIER may hold a command with arguments, e.g. "pipx run copier".
    read -r -a COPIER_CMD <<<"$COPIER"
  elif command -v copier >/dev/null 2>&1; then
    COPIER_CMD=(copier)
  elif command -v uvx >/dev/null 2>&1; then
    COPIER_CMD=(uvx --from "copier==$COPIER_VERSION" copier)
  else
    die "copier is not installed: pipx install copier==$COPIER_VERSION (or uv tool install), or set COPIER"
  fi
}

# Sets UV_CMD, or leaves it empty when there is no uv.
find_uv() {
  UV_CMD=()
  if [ -n "${UV:-}" ] && command -v "${UV%% *}" >/dev/null 2>&1; then
    read -r -a UV_CMD <<<"$UV"
  elif command -v uv >/dev/null 2>&1; then
    UV_CMD=(uv)
  elif [ -x .venv/bin/uv ]; then
    UV_CMD=(.venv/bin/uv)
  fi
}

indent() {
  sed 's/^/  /'
}

answer() {
  sed -n "s/^$1: *//p" "$ANSWERS_FILE" | sed -e "s/^'\(.*\)'\$/\1/" -e 's/^"\(.*\)"$/\1/'
}

# Prints every path with an unresolved conflict, once each, sorted.
conflicts() {
  {
    git diff --name-only --diff-filter=U
    git grep --untracked -lE -e '^<<<<<<< ' -e '^>>>>>>> ' -- . || true
    # Staged ones too: `git add -A` must not turn a leftover hunk into a pass.
    git ls-files --cached --others --exclude-standard -- '*.rej' | while IFS= read -r path; do
      if [ -e "$path" ]; then echo "$path"; fi
    done
  } | sort -u
}

check_conflicts() {
  local found
  found=$(conflicts)
  [ -z "$found" ] && return 0
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
}

check_lock() {
  [ -f uv.lock ] || return 0
  find_uv
  if [ -z "${UV_CMD[*]:-}" ]; then
    echo "update: uv.lock cannot be checked without uv: run make install (or install uv) first" >&2
    return 1
  fi
  if ! "${UV_CMD[@]}" lock --check --quiet; then
    echo "update: uv.lock does not match pyproject.toml (above): run \`uv lock\`, then commit uv.lock" >&2
    return 1
  fi
}

check() {
  require_git_work_tree
  local status=0
  check_conflicts || status=1
  check_lock || status=1
  if [ "$status" -eq 0 ]; then
    echo "update: no conflicts."
  fi
  return "$status"
}

# Renders the template into $1 with the recorded answers and the copier options that follow.
render() {
  local dest=$1
  shift
  "${COPIER_CMD[@]}" copy --trust --skip-tasks --defaults --quiet --data-file "$ANSWERS_FILE" "$@" \
    "$(answer _src_path)" "$dest" >/dev/null
}

# Prints the files the update will delete although this project changed them since the template wrote them:
# copier removes a file the new render lacks, edits and all. $1 is the recorded version, the rest are the
# update's copier options (target version, changed answers).
edited_files_it_deletes() {
  local before=$1 path old new
  shift
  # A first run of copier (pipx run, uvx) sets up its environment once, not twice at the same time.
  "${COPIER_CMD[@]}" --version >/dev/null || return 1
  render "$SCRATCH/old" --vcs-ref "$before" &
  old=$!
  render "$SCRATCH/new" "$@" &
  new=$!
  # Explicit returns: errexit does not apply here, inside the caller's `||`.
  wait "$old" || return 1
  wait "$new" || return 1
  (cd "$SCRATCH/old" && find . -type f ! -path './.git/*') | sed 's|^\./||' | sort |
    while IFS= read -r path; do
      if [ ! -e "$SCRATCH/new/$path" ] && [ -f "$path" ] && ! cmp -s "$path" "$SCRATCH/old/$path"; then
        echo "$path"
      fi
    done
}

# Prints the "after updating" side of a file with inline conflict markers: the template's new version.
template_side() {
  awk '
    /^<<<<<<< / { side = "ours"; next }
    /^\|\|\|\|\|\|\| / && side == "ours" { side = "base"; next }
    /^=======$/ && (side == "ours" || side == "base") { side = "theirs"; next }
    /^>>>>>>> / && side == "theirs" { side = ""; next }
    side != "ours" && side != "base" { print }
  ' "$1"
}

# Keeps uv.lock in step with the updated pyproject.toml. A conflicted lock restarts from the template's new
# one, so the template's packages get the versions it was tested with; `uv lock` then adds the project's
# own dependencies (at the versions pyproject.toml pins) and keeps every other locked version it can.
relock() {
  [ -f uv.lock ] || return 0
  # An untracked lock is the template's new one: it knows nothing of this project's own dependencies.
  if git ls-files --error-unmatch uv.lock >/dev/null 2>&1 &&
    git diff --quiet HEAD -- pyproject.toml uv.lock; then
    return 0
  fi
  if conflicts | grep -qx 'pyproject.toml'; then
    echo "update: uv.lock is left alone while pyproject.toml has conflicts: resolve them, then \`uv lock\`."
    return 0
  fi
  find_uv
  if [ -z "${UV_CMD[*]:-}" ]; then
    echo "update: uv is not installed, so uv.lock is not re-locked: make install, then \`uv lock\`."
    return 0
  fi
  if grep -qE '^(<<<<<<<|>>>>>>>) ' uv.lock; then
    local side
    side=$(template_side uv.lock)
    printf '%s\n' "$side" >uv.lock
  fi
  if "${UV_CMD[@]}" lock --quiet; then
    rm -f uv.lock.rej
    if [ -n "$(git ls-files --unmerged -- uv.lock)" ]; then
      git add uv.lock # resolved: git no longer lists it as unmerged
    fi
    echo "update: uv.lock re-locked for the updated pyproject.toml."
  else
    echo "update: \`uv lock\` failed (above): fix pyproject.toml, then run it again." >&2
    return 1
  fi
}

update() {
  local before after ref="" data=() src deleted="" arg
  local args=("$@")
  while [ $# -gt 0 ]; do
    arg=$1
    shift
    case "$arg" in
      --vcs-ref) ref=${1:?--vcs-ref needs a tag or commit} && shift ;;
      --vcs-ref=*) ref=${arg#--vcs-ref=} ;;
      -d | --data) data+=("${1:?--data needs NAME=VALUE}") && shift ;;
      --data=*) data+=("${arg#--data=}") ;;
      *) die "unknown option $arg (see --help)" ;;
    esac
  done
  require_git_work_tree
  [ -f "$ANSWERS_FILE" ] || die "no $ANSWERS_FILE here: run this from the project root"
  if [ -n "$(git status --porcelain)" ]; then
    git status --short >&2
    die "the work tree has uncommitted changes (above): commit or stash them first, so the update's changes
        can be reviewed (and undone) on their own"
  fi
  find_copier
  before=$(answer _commit)
  src=$(answer _src_path)
  case "$src" in
    /* | "~"* | .*)
      [ -d "${src/#\~/$HOME}" ] || die "the template source $src is gone: if it moved, write its new
        path or URL as _src_path in $ANSWERS_FILE, commit, and run this again (the template's
        docs/updating.md, \"The template moved\")" ;;
  esac

  if [ -z "$ref" ] && [ -z "${data[*]:-}" ]; then
    newest_release_or_exit "$before"
  elif [ -z "$ref" ]; then
    args+=(--vcs-ref=:current:) # an answer change alone keeps the version
    ref=$before
  fi

  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  if [ -n "$before" ]; then
    local target=()
    [ -n "$ref" ] && target+=(--vcs-ref "$ref")
    for arg in ${data[@]+"${data[@]}"}; do target+=(--data "$arg"); done
    deleted=$(edited_files_it_deletes "$before" ${target[@]+"${target[@]}"}) ||
      echo "update: the template could not be rendered (above), so files you changed that the update deletes
        are not listed: review \`git status\` for deleted files after the update." >&2
    if [ -n "$deleted" ]; then
      echo "update: the new template has no such file, so the update deletes these files you changed:"
      indent <<<"$deleted"
    fi
  fi

  # --trust: the template's migrations run; --defaults: keep every recorded answer; inline conflict markers.
  "${COPIER_CMD[@]}" update --trust --defaults --conflict inline "${args[@]}"
  after=$(answer _commit)
  if [ "$before" = "$after" ] && [ -z "$(git status --porcelain)" ]; then
    echo "update: already up to date with the template ($before)."
    return 0
  fi
  relock || true # the check below fails on the stale lock
  if [ "$before" = "$after" ]; then
    echo "update: template version $after kept."
  else
    echo "update: template $before -> $after."
  fi
  if [ -n "${data[*]:-}" ]; then
    echo "update: answers changed: ${data[*]}."
  fi
  if [ -n "$deleted" ]; then
    echo "update: deleted, although you had changed them (your version: git show HEAD:<path>):"
    indent <<<"$deleted"
  fi
  echo "update: review with \`git diff HEAD\`, run \`make check\`, then commit."
  check
}

# Prints the template CHANGELOG's sections from version $2 back to (not including) release $1, each heading
# one level down so the sections nest under the pull request's own.
changelog_between() {
  local since=${1%-*-g*} clone text=""
  clone=$(mktemp -d)
  if git clone --quiet --no-checkout --filter=blob:none "$(answer _src_path)" "$clone" 2>/dev/null; then
    text=$(git -C "$clone" show "$2:CHANGELOG.md" 2>/dev/null || true)
  fi
  rm -rf "$clone"
  awk -v since="$since" '
    /^## / { if ($2 == since) exit; shown = $2 ~ /^v[0-9]/ }
    shown { sub(/^#/, "##"); print }
  ' <<<"$text"
}

# The body of the update's pull (merge) request: versions, conflicts left, what the template changed.
summary() {
  local before=${1:?--summary needs the version the update started from} after found changes
  require_git_work_tree
  after=$(answer _commit)
  found=$(conflicts)
  echo "\`copier update\` of this project from the template's $before to $after (\`scripts/update.sh\`)."
  echo
  if [ -n "$found" ]; then
    echo "**Conflicts with local edits**: resolve them on this branch (\`make update-check\` passes when"
    echo "none is left; see the \"Conflicts\" section of the template's docs/updating.md):"
    echo
    while IFS= read -r path; do
      printf -- "- \`%s\`\n" "$path"
    done <<<"$found"
  else
    echo "No conflicts with local edits."
  fi
  changes=$(changelog_between "$before" "$after")
  if [ -n "$changes" ]; then
    echo
    echo "## What the template changed (its CHANGELOG)"
    echo
    head -c "$BODY_LIMIT" <<<"$changes"
  fi
}

# Without a REF, the target is the newest release: stop here when the project has it already, or is past it
# (made from a commit after the newest release, where copier would refuse a "downgrade").
newest_release_or_exit() {
  local status current newest
  status=$("${COPIER_CMD[@]}" check-update --output-format json 2>/dev/null) || return 0
  grep -q '"update_available": *false' <<<"$status" || return 0
  current=$(sed -n 's/.*"current_version": *"\([^"]*\)".*/\1/p' <<<"$status")
  newest=$(sed -n 's/.*"latest_version": *"\([^"]*\)".*/\1/p' <<<"$status")
  if [ "$current" = "$newest" ]; then
    echo "update: already up to date with the newest release ($1)."
  else
    echo "update: this project ($1) is past the newest release ($newest): nothing to update. \`make update"
    echo "REF=HEAD\` brings the template's newest commit; \`make update DATA=name=value\` changes an answer."
  fi
  exit 0
}

case "${1:-}" in
  --check) check ;;
  --summary) summary "${2:-}" ;;
  --relock) require_git_work_tree && relock ;;
  -h | --help) usage ;;
  *) update "$@" ;;
esac
