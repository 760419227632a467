#!/usr/bin/env bash
# Back up the service's database: a compressed, checksummed backup plus a row-count manifest, then the
# retention policy, then (when configured) an upload to S3-compatible storage. `--help` for the details.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: scripts/backup.sh [options]

Back up the database the service uses (DATABASE_URL, else DATABASE_URL in ./.env, else the PG*
variables, else the service's default). Run it from the project root, like the service.

  PostgreSQL  pg_dump --format=custom (compressed)     -> <db>-<UTC time>.dump
  SQLite      online backup API, checked, gzipped      -> <file>-<UTC time>.sqlite3.gz

Beside each backup: <backup>.manifest.json (rows per table, for verify-backup.sh) and <backup>.sha256
(check by hand with: cd <dir> && sha256sum -c <backup>.sha256). The path of the new backup is printed
on stdout; progress goes to stderr.

Options:
  --dir DIR          where backups go (BACKUP_DIR, default: backups)
  --keep-days N      keep every backup younger than N days (BACKUP_KEEP_DAYS, default 7; 0: no age rule)
  --keep-count N     keep the newest N backups (BACKUP_KEEP_COUNT, default 7; 0: no count rule)
                     Retention deletes a backup only when BOTH rules let it go, never the newest one,
                     and only files named by this script for this database.
  --no-prune         keep every backup
  --upload           upload to BACKUP_S3_URI (s3://bucket/prefix) with the aws CLI; the default when
                     BACKUP_S3_URI is set. BACKUP_S3_ENDPOINT_URL points at S3-compatible storage.
                     Credentials come from the usual AWS variables or profile.
  --no-upload        do not upload, even when BACKUP_S3_URI is set
  -h, --help         this help
EOF
}

keep_days=${BACKUP_KEEP_DAYS:-7}
keep_count=${BACKUP_KEEP_COUNT:-7}
prune=yes
upload=${BACKUP_S3_URI:+yes}
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
	--keep-days)
		require_value "$@"
		keep_days=$2
		shift
		;;
	--keep-count)
		require_value "$@"
		keep_count=$2
		shift
		;;
	--no-prune) prune=no ;;
	--upload) upload=yes ;;
	--no-upload) upload=no ;;
	-*) die "unknown option '$1' (see --help)" ;;
	*) die "unexpected argument '$1' (see --help)" ;;
	esac
	shift
done
require_count --keep-days "$keep_days"
require_count --keep-count "$keep_count"
if [[ $prune == yes ]] && ((keep_days == 0 && keep_count == 0)); then
	die "--keep-days 0 with --keep-count 0 would keep nothing: set one of them, or pass --no-prune"
fi
if [[ $upload == yes ]]; then
	[[ -n ${BACKUP_S3_URI:-} ]] || die "--upload needs BACKUP_S3_URI (e.g. s3://my-bucket/backups)"
	[[ $BACKUP_S3_URI == s3://?* ]] || die "BACKUP_S3_URI must look like s3://bucket[/prefix]"
	command -v aws >/dev/null 2>&1 ||
		die "an upload to BACKUP_S3_URI was asked for but the aws CLI is not installed: install it, or pass --no-upload"
fi

start
load_database_config
mkdir -p -- "$BACKUP_DIR" || die "cannot create the backup directory $BACKUP_DIR"
BACKUP_DIR=$(cd -- "$BACKUP_DIR" && pwd)
say "backing up $DB_LABEL"

backup_postgres() { # BACKUP_FILE
	require_command pg_dump "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"
	require_command pg_restore "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"
	require_postgres_connection "is the server up, and is DATABASE_URL right?"
	# pg_dump reads one consistent snapshot; the lock timeout stops it from queueing forever behind DDL.
	pg_dump --format=custom --lock-wait-timeout=120000 --file="$1.partial" ||
		die "pg_dump failed for $DB_LABEL (see its message above)"
	# Reading the new dump back proves it is complete, and gives the rows per table it holds.
	pg_restore --data-only --file=- "$1.partial" | dbtool copy-counts >"$WORK_DIR/counts.json" ||
		die "the new dump cannot be read back by pg_restore (see above)"
}

backup_sqlite() { # BACKUP_FILE
	dbtool sqlite-backup "$SQLITE_PATH" "$1.partial" --counts "$WORK_DIR/counts.json"
}

case $DB_KIND in
postgres) extension=dump ;;
sqlite) extension=sqlite3.gz ;;
esac
backup=$(dbtool new-name --dir "$BACKUP_DIR" --prefix "$DB_NAME" --ext "$extension")
# Until the checksum file exists the set is incomplete: a failure removes every piece of it.
remove_on_failure "$backup.partial" "$backup" "$backup.manifest.json" "$backup.manifest.json.partial" "$backup.sha256.partial"
"backup_$DB_KIND" "$backup"
mv -- "$backup.partial" "$backup"
dbtool manifest --out "$backup.manifest.json" --backup "$backup" --kind "$DB_KIND" --source "$DB_LABEL" \
	--counts "$WORK_DIR/counts.json"
dbtool checksum-write "$backup.sha256" "$backup" "$backup.manifest.json"
keep_on_failure
say "wrote $backup ($(du -h -- "$backup" | cut -f1)):"
dbtool show-counts "$WORK_DIR/counts.json" >&2

if [[ $upload == yes ]]; then
	destination=${BACKUP_S3_URI%/}
	aws_options=(--only-show-errors)
	if [[ -n ${BACKUP_S3_ENDPOINT_URL:-} ]]; then aws_options+=(--endpoint-url "$BACKUP_S3_ENDPOINT_URL"); fi
	# The checksum file goes last: its presence marks a complete set remotely too.
	for file in "$backup" "$backup.manifest.json" "$backup.sha256"; do
		aws s3 cp "${aws_options[@]}" "$file" "$destination/$(basename -- "$file")" ||
			die "upload of $(basename -- "$file") to $destination failed (see the aws message above); the local backup is kept"
	done
	say "uploaded to $destination/"
fi

if [[ $prune == yes ]]; then
	removed=$(dbtool prune --dir "$BACKUP_DIR" --prefix "$DB_NAME" --keep-days "$keep_days" --keep-count "$keep_count")
	while IFS= read -r path; do
		if [[ -n $path ]]; then say "retention: removed $path"; fi
	done <<<"$removed"
fi
printf '%s\n' "$backup"
