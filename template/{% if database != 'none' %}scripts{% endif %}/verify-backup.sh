#!/usr/bin/env bash
# Prove a backup restores: checksum, a real restore into a scratch database (dropped afterwards),
# integrity checks, and rows per table compared with the backup's manifest (or the live source).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: scripts/verify-backup.sh [options] [BACKUP_FILE]

Verify BACKUP_FILE, or the newest complete backup of the service's database in the backup directory.
Exits non-zero on any corruption or mismatch. Never touches the source database: it only reads it.

  1. the checksum file (<backup>.sha256) must match
  2. PostgreSQL: the backup is restored into a temporary database (CREATE DATABASE ... TEMPLATE template0
     on the server of VERIFY_DATABASE_URL, default DATABASE_URL; the role needs CREATEDB), which is
     dropped afterwards. SQLite: it is unpacked into a temporary file and must pass
     PRAGMA integrity_check.
  3. rows per table must equal the manifest written by backup.sh (works offline); without a manifest,
     they are compared with the source database, if it can be reached.

Options:
  --dir DIR           the backup directory (BACKUP_DIR, default: backups)
  --against-source    also compare with the live source database (only meaningful while nothing
                      writes to it, e.g. right after a backup in a test)
  -h, --help          this help
EOF
}

backup='' against_source=no
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--dir)
		require_value "$@"
		BACKUP_DIR=$2
		shift
		;;
	--against-source) against_source=yes ;;
	-*) die "unknown option '$1' (see --help)" ;;
	*)
		[[ -z $backup ]] || die "only one backup file, please (see --help)"
		backup=$1
		;;
	esac
	shift
done

start
load_database_config
source_label=$DB_LABEL
if [[ -z $backup ]]; then backup=$(dbtool latest --dir "$BACKUP_DIR" --prefix "$DB_NAME"); fi
[[ -f $backup ]] || die "no backup file at $backup"
kind=$(backup_kind "$backup")
say "verifying $backup"
verify_checksum "$backup"

scratch_database=''
drop_scratch_database() {
	[[ -n $scratch_database ]] || return 0
	psql_query "DROP DATABASE IF EXISTS $scratch_database WITH (FORCE)" >/dev/null 2>&1 ||
		psql_query "DROP DATABASE IF EXISTS $scratch_database" >/dev/null ||
		warn "could not drop the scratch database $scratch_database: drop it by hand"
}

verify_postgres() {
	require_command pg_restore "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"
	if [[ -n ${VERIFY_DATABASE_URL:-} ]]; then load_database_config VERIFY_DATABASE_URL; fi
	if [[ $DB_KIND != postgres ]]; then
		die "a PostgreSQL backup needs a PostgreSQL server to restore into: set VERIFY_DATABASE_URL"
	fi
	require_postgres_connection "verify needs a PostgreSQL server to restore into (set VERIFY_DATABASE_URL)"
	say "restoring into a scratch database on the server of $DB_LABEL"
	# Lower-case letters, digits and underscores only: safe unquoted in SQL.
	scratch_database="verify_backup_$(date +%s)_$$_$RANDOM"
	AT_EXIT+=(drop_scratch_database)
	psql_query "CREATE DATABASE $scratch_database TEMPLATE template0" >/dev/null ||
		die "cannot create a scratch database on $DB_LABEL (the role needs CREATEDB)"
	PGDATABASE=$scratch_database pg_restore --no-owner --no-acl --single-transaction --exit-on-error \
		--dbname="$scratch_database" "$backup" ||
		die "$(basename -- "$backup") does not restore cleanly (see pg_restore's message above)"
	PGDATABASE=$scratch_database postgres_row_counts >"$WORK_DIR/restored.json"
	drop_scratch_database
	scratch_database=''
	say "restored into a scratch database, which is dropped again"
}

verify_sqlite() {
	dbtool sqlite-verify "$backup" --workdir "$WORK_DIR" >"$WORK_DIR/restored.json"
	say "PRAGMA integrity_check: ok"
}

# The live source's rows per table, in a subshell so its connection settings stay there.
source_counts() ( # OUTPUT_FILE
	load_database_config
	if [[ $DB_KIND != "$kind" ]]; then exit 3; fi
	if [[ $DB_KIND == postgres ]]; then
		psql_query 'SELECT 1' >/dev/null 2>&1 || exit 3
		postgres_row_counts >"$1"
	else
		[[ -f $SQLITE_PATH ]] || exit 3
		dbtool sqlite-counts "$SQLITE_PATH" >"$1"
	fi
)

"verify_$kind"
manifest="$backup.manifest.json"
if [[ -f $manifest ]]; then
	dbtool compare "$manifest" "$WORK_DIR/restored.json" --expected-label manifest
	say "row counts match the manifest"
fi
if [[ $against_source == yes || ! -f $manifest ]]; then
	[[ -f $manifest ]] || warn "no manifest beside the backup: comparing with the live source instead"
	source_status=0
	source_counts "$WORK_DIR/source.json" || source_status=$?
	if ((source_status == 3)); then
		die "no row-count reference: no manifest beside the backup, and the source database ($source_label) cannot be read"
	elif ((source_status != 0)); then
		exit "$source_status"
	fi
	dbtool compare "$WORK_DIR/source.json" "$WORK_DIR/restored.json" --expected-label source \
		--what "the backup differs from the live source (did it change since the backup?)"
	say "row counts match the live source"
fi
dbtool show-counts "$WORK_DIR/restored.json"
say "backup OK: $backup"
