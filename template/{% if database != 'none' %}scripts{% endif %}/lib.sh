# shellcheck shell=bash
# Shared by backup.sh, restore.sh and verify-backup.sh (sourced, never run): messages, the exit handler,
# the scratch directory, and database access. The caller runs `set -euo pipefail` first.
#
# Passwords never reach a command line or a message: dbtool.py turns DATABASE_URL into libpq environment
# variables and puts the password, if any, in a 0600 password file inside the scratch directory.

PROG=${0##*/}
# cd must print nothing: $(cd DIR && pwd) below relies on it.
unset CDPATH
# Without this, a failure inside $(...) goes unnoticed.
shopt -s inherit_errexit
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
PROJECT_ROOT=$(dirname -- "$SCRIPT_DIR")
DBTOOL="$SCRIPT_DIR/dbtool.py"
if [[ -x "$PROJECT_ROOT/.venv/bin/python" ]]; then
	PYTHON="$PROJECT_ROOT/.venv/bin/python"
else
	PYTHON=$(command -v python3 || true)
fi
BACKUP_DIR=${BACKUP_DIR:-backups}
export DBTOOL_PROG=$PROG
# Backups hold every row of the database: nobody else may read them.
umask 077

# Set by load_database_config; declared here so every script sees them (used by the callers).
# shellcheck disable=SC2034
DB_KIND='' DB_LABEL='' DB_NAME='' SQLITE_PATH=''
WORK_DIR=''
CLEANUP_PATHS=()
AT_EXIT=()
_LAST_COMMAND=''

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }

# One line, then exit 1. The marker tells the exit handler (of this shell or, from a command
# substitution, of the parent) that the failure has been explained.
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	[[ -n $WORK_DIR && -d $WORK_DIR ]] && : >"$WORK_DIR/reported"
	exit 1
}

_on_exit() {
	local status=$? action path
	trap - ERR
	set +e
	for action in ${AT_EXIT[@]+"${AT_EXIT[@]}"}; do "$action"; done
	for path in ${CLEANUP_PATHS[@]+"${CLEANUP_PATHS[@]}"}; do rm -f -- "$path"; done
	if ((status != 0)) && [[ ! -e "$WORK_DIR/reported" ]]; then
		printf '%s: error: failed (exit status %s): %s\n' "$PROG" "$status" "${_LAST_COMMAND:-unexpected exit}" >&2
	fi
	[[ -n $WORK_DIR ]] && rm -rf -- "$WORK_DIR"
	exit "$status"
}

# Call once, after the arguments are parsed.
start() {
	[[ -n $PYTHON ]] || die "python3 is needed (or the project's .venv): install Python 3.11 or newer"
	WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/${PROG%.sh}.XXXXXX") || die "cannot create a scratch directory"
	set -E
	trap '_LAST_COMMAND="line $LINENO: $BASH_COMMAND"' ERR
	trap _on_exit EXIT
	trap '_LAST_COMMAND="interrupted by SIGINT"; exit 130' INT
	trap '_LAST_COMMAND="interrupted by SIGTERM"; exit 143' TERM
}

# Run the helper; it prints its own one-line error, so mark the failure as explained.
dbtool() {
	"$PYTHON" "$DBTOOL" "$@" || {
		local status=$?
		: >"$WORK_DIR/reported"
		exit "$status"
	}
}

# Files that make no sense alone: removed if the script fails before keep_on_failure.
remove_on_failure() { CLEANUP_PATHS+=("$@"); }
keep_on_failure() { CLEANUP_PATHS=(); }

require_command() { # NAME HINT
	command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

require_value() { # OPTION VALUE...
	(($# >= 2)) && [[ -n $2 ]] || die "$1 needs a value (see --help)"
}

require_count() { # OPTION VALUE
	[[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not '$2'"
}

# Export the connection settings named by URL_VARIABLE (default DATABASE_URL; the .env file and then
# the PG* environment are the fallbacks, as for the service itself).
load_database_config() { # [URL_VARIABLE]
	local variable=${1:-DATABASE_URL} output line key value
	output=$(dbtool env --url-var "$variable" --passfile "$WORK_DIR/pgpass-$variable")
	while IFS= read -r line; do
		key=${line%%=*}
		value=${line#*=}
		case $key in
		DB_KIND | DB_LABEL | DB_NAME | SQLITE_PATH) printf -v "$key" '%s' "$value" ;;
		PGHOST | PGHOSTADDR | PGPORT | PGUSER | PGDATABASE | PGPASSFILE | PGSSLMODE | PGSSLROOTCERT | PGSSLCERT | \
			PGSSLKEY | PGSSLCRL | PGCHANNELBINDING | PGGSSENCMODE | PGCONNECT_TIMEOUT | PGAPPNAME | PGOPTIONS | \
			PGTARGETSESSIONATTRS | PGSERVICE)
			export "$key=$value"
			;;
		UNSET) [[ $value == PGPASSWORD ]] && unset PGPASSWORD ;;
		esac
	done <<<"$output"
	if [[ $DB_KIND == postgres ]]; then
		export PGAPPNAME=${PGAPPNAME:-$PROG}
		export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
	fi
}

# The backup's kind, from its name.
backup_kind() { # FILE
	case $1 in
	*.dump) echo postgres ;;
	*.sqlite3.gz) echo sqlite ;;
	*) die "$(basename -- "$1") is not a backup made by backup.sh (expected *.dump or *.sqlite3.gz)" ;;
	esac
}

verify_checksum() { # BACKUP_FILE
	dbtool checksum-verify "$1.sha256" --require "$(basename -- "$1")"
	say "checksum OK: $(basename -- "$1")"
}

# --- PostgreSQL -------------------------------------------------------------------------------------------

psql_query() { # SQL (against PGDATABASE)
	psql --no-psqlrc --no-align --tuples-only --quiet --set ON_ERROR_STOP=1 --command "$1"
}

require_postgres_connection() { # what to say when it fails
	require_command psql "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"
	psql_query 'SELECT 1' >/dev/null || die "cannot connect to $DB_LABEL${1:+: $1}"
}

# Ordinary tables outside the system schemas, leaving out what extensions own (they recreate it).
PG_USER_TABLES="
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
	AND NOT EXISTS (
		SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
		WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
		AND NOT c.oid = ANY (coalesce(e.extconfig, '{}'))
	)"

postgres_relation_count() {
	psql_query "SELECT count(*) $PG_USER_TABLES AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
}

# Rows per table as JSON, counted exactly (FROM ONLY: a partition's rows count once, in the partition).
postgres_row_counts() {
	psql_query "SELECT coalesce(json_object_agg(name, rows ORDER BY name), '{}') FROM (
		SELECT n.nspname || '.' || c.relname AS name,
			(xpath('/row/n/text()', query_to_xml(
				format('SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname), false, true, ''
			)))[1]::text::bigint AS rows
		$PG_USER_TABLES AND c.relkind = 'r'
	) AS counted"
}
