#!/usr/bin/env bash
# Restore a backup made by backup.sh into the service's database: checksum first, then guards (a
# non-empty target needs --force, a person confirms unless --yes), then the restore and its row counts.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: scripts/restore.sh [options] BACKUP_FILE
       scripts/restore.sh [options] --latest

Restore a backup made by backup.sh into the database named by DATABASE_URL (else DATABASE_URL in
./.env, else the PG* variables, else the service's default). Stop the service first.

  1. the backup's checksum file (<backup>.sha256) is verified; a mismatch stops everything
  2. a target that already has tables is refused unless --force
  3. you are asked to confirm on the terminal unless --yes (no terminal and no --yes: refused)
  4. PostgreSQL: pg_restore --clean --if-exists --no-owner in ONE transaction (all or nothing);
     the target database must exist (createdb it first on a new server).
     SQLite: restored into a temporary file beside the target, checked, then renamed over it.
  5. rows per table are printed and compared with the backup's manifest

Options:
  --latest      restore the newest complete backup of this database in the backup directory
  --dir DIR     the backup directory for --latest (BACKUP_DIR, default: backups)
  --force       replace a target that already holds tables
  --yes         do not ask for confirmation
  -h, --help    this help
EOF
}

backup='' latest=no force=no assume_yes=no
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
	--latest) latest=yes ;;
	--force) force=yes ;;
	--yes) assume_yes=yes ;;
	-*) die "unknown option '$1' (see --help)" ;;
	*)
		[[ -z $backup ]] || die "only one backup file, please (see --help)"
		backup=$1
		;;
	esac
	shift
done
if [[ $latest == yes && -n $backup ]]; then die "give a backup file or --latest, not both"; fi
if [[ $latest == no && -z $backup ]]; then die "which backup? give its file, or --latest (see --help)"; fi

start
load_database_config
if [[ $latest == yes ]]; then backup=$(dbtool latest --dir "$BACKUP_DIR" --prefix "$DB_NAME"); fi
[[ -f $backup ]] || die "no backup file at $backup"
kind=$(backup_kind "$backup")
verify_checksum "$backup"
if [[ $kind != "$DB_KIND" ]]; then
	die "$(basename -- "$backup") is a $kind backup but the target is $DB_LABEL"
fi

if [[ $kind == postgres ]]; then
	require_command pg_restore "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"
	require_postgres_connection "if the database does not exist yet, create it first (createdb), then restore"
	tables=$(postgres_relation_count)
else
	tables=$(dbtool sqlite-tables "$SQLITE_PATH")
fi
if [[ $tables != 0 && $force != yes ]]; then
	if [[ $tables == unreadable ]]; then
		die "$SQLITE_PATH exists but is not a readable SQLite database: pass --force to replace it"
	fi
	die "the target $DB_LABEL is not empty (it holds $tables tables, views or sequences): pass --force to replace its contents"
fi

if [[ $assume_yes != yes ]]; then
	[[ -t 0 ]] || die "no terminal to confirm on: pass --yes to restore without asking"
	printf 'Restore %s into %s, replacing its current contents? Type yes to continue: ' \
		"$(basename -- "$backup")" "$DB_LABEL" >&2
	read -r answer || answer=''
	[[ $answer == yes ]] || die "restore cancelled (the answer was not 'yes')"
fi

say "restoring $(basename -- "$backup") into $DB_LABEL"
if [[ $kind == postgres ]]; then
	pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error \
		--dbname="$PGDATABASE" "$backup" ||
		die "pg_restore failed (see its message above); the transaction was rolled back, the target is unchanged"
	postgres_row_counts >"$WORK_DIR/restored.json"
else
	dbtool sqlite-restore "$backup" "$SQLITE_PATH" >"$WORK_DIR/restored.json"
fi

say "restored; rows per table:"
dbtool show-counts "$WORK_DIR/restored.json"
if [[ -f "$backup.manifest.json" ]]; then
	dbtool compare "$backup.manifest.json" "$WORK_DIR/restored.json" --subset --expected-label manifest \
		--what "the restored database does not hold the rows the backup recorded"
	say "row counts match the backup's manifest"
else
	warn "no manifest beside the backup: row counts not compared"
fi
