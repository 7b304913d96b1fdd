#!/usr/bin/env bash
# Benchmark (not a test): changes/s of `pgferry stream receive` (decode + spool
# to <dir>/cdc, fsynced) against `pg_recvlogical … -f /dev/null`, on the same
# slot data, for pgoutput and test_decoding, side by side in one run.
#
# Both tools get their own slot, created before the workload, so each decodes
# exactly the same WAL. Both run to the same endpos (taken after the workload),
# with the same plugin options. Wall-clock time includes process start.
#
#   bash bench/receive.sh [ROWS] [ROWS_PER_TXN]      (default 1000000 1000)
#   PGFERRY_BENCH_URI=postgres://… bash bench/receive.sh   (use a running source
#                                                          with wal_level=logical)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

rows=${1:-1000000}
per_txn=${2:-1000}
DENO=$(bash scripts/deno.sh)
PG_RECVLOGICAL=${PG_RECVLOGICAL:-$PG_BIN/pg_recvlogical}
[ -x "$PG_RECVLOGICAL" ] || PG_RECVLOGICAL=$(command -v pg_recvlogical)

work=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-bench.XXXXXX")
chmod 755 "$work"
cleanup() {
  [ -z "${PGFERRY_BENCH_URI:-}" ] && pg_stop "$work/source"
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${PGFERRY_BENCH_URI:-}" ]; then
  uri=$PGFERRY_BENCH_URI
else
  pg_ensure_packages
  pg_start source "$work/source" logical "fsync = off" >/dev/null 2>&1
  uri=$PG_URI
fi
psql() { command psql -X -q -v ON_ERROR_STOP=1 -d "$uri" "$@"; }

psql -c "drop table if exists pgferry_bench; drop publication if exists pgferry_bench" \
  -c "create table pgferry_bench (id bigserial primary key, n integer, t text, at timestamptz)" \
  -c "create publication pgferry_bench for table pgferry_bench"
plugins=(pgoutput test_decoding)
for plugin in "${plugins[@]}"; do
  for who in pgferry recvlogical; do
    psql -c "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = 'bench_${who}_${plugin}'" \
      -c "select 1 from pg_create_logical_replication_slot('bench_${who}_${plugin}', '$plugin')" >/dev/null
  done
done

echo "workload: $rows rows in transactions of $per_txn ($((rows / per_txn)) transactions)" >&2
psql <<SQL
do \$\$
begin
  for i in 1..($rows / $per_txn) loop
    insert into pgferry_bench (n, t, at)
      select g, 'row ' || g || ' of transaction ' || i, now() from generate_series(1, $per_txn) g;
    commit;
  end loop;
end
\$\$;
SQL
endpos=$(psql -At -c "select pg_current_wal_flush_lsn()")
changes=$(((rows / per_txn) * per_txn))
echo "endpos $endpos, $changes row changes" >&2

now() { date +%s.%N; }
rate() { awk -v n="$changes" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }

declare -A seconds
for plugin in "${plugins[@]}"; do
  options=()
  ferry_options=()
  if [ "$plugin" = pgoutput ]; then
    options=(-o proto_version=1 -o publication_names=pgferry_bench)
    ferry_options=(--publication pgferry_bench)
  else
    options=(-o include-xids=1 -o include-timestamp=1 -o skip-empty-xacts=1)
  fi

  start=$(now)
  "$PG_RECVLOGICAL" -d "$uri" --slot "bench_recvlogical_$plugin" --start -E "$endpos" \
    "${options[@]}" -f /dev/null --no-loop
  seconds[recvlogical_$plugin]=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')

  dir="$work/dir-$plugin"
  start=$(now)
  NO_COLOR=1 PGFERRY_LOG_LEVEL=warn "$DENO" run -A --quiet main.ts stream receive \
    --source "$uri" --dir "$dir" --plugin "$plugin" --slot-name "bench_pgferry_$plugin" \
    "${ferry_options[@]}" --resume --endpos "$endpos"
  seconds[pgferry_$plugin]=$(awk -v a="$start" -v b="$(now)" 'BEGIN { print b - a }')
  spool=$(du -sb "$dir/cdc" | cut -f1)
  echo "$plugin: spool $((spool / 1048576)) MiB" >&2
done

printf '\n%-14s %16s %16s %16s %16s %8s\n' plugin "pgferry s" "pgferry chg/s" "recvlogical s" \
  "recvlogical chg/s" ratio
for plugin in "${plugins[@]}"; do
  f=${seconds[pgferry_$plugin]}
  r=${seconds[recvlogical_$plugin]}
  printf '%-14s %16.2f %16s %16.2f %16s %8s\n' "$plugin" "$f" "$(rate "$f")" "$r" "$(rate "$r")" \
    "$(awk -v f="$f" -v r="$r" 'BEGIN { printf "%.2fx", r / f }')"
done
echo "(ratio = pgferry changes/s ÷ pg_recvlogical changes/s; above 1 means pgferry is faster)"

for plugin in "${plugins[@]}"; do
  for who in pgferry recvlogical; do
    psql -c "select pg_drop_replication_slot('bench_${who}_${plugin}')" >/dev/null
  done
done
psql -c "drop publication pgferry_bench; drop table pgferry_bench"
