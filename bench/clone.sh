#!/usr/bin/env bash
# Benchmark (not a test): wall time of a whole-database copy, side by side in
# one run on the same data, on throwaway local clusters.
#
#   bash bench/clone.sh                 # pgbench scale 20, 3 rounds
#   SCALE=50 ROUNDS=5 bash bench/clone.sh
#   PGFERRY_ARGS="--split-tables-larger-than 100MB" bash bench/clone.sh
#
# Contenders, each into a fresh target database, in rotating order per round:
#   pgferry    pgferry clone (default options)
#   pgcopydb   pgcopydb clone (Debian's 0.10)
#   dump       pg_dump -Fc | pg_restore
#   copy       psql COPY pgbench_accounts TO STDOUT | psql COPY FROM STDIN (the floor)
# Every target except "copy" is checked with "pgferry compare data". Prints the
# median of each and the ratios.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

SCALE=${SCALE:-20}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-4}
PGFERRY_ARGS=${PGFERRY_ARGS:-}
DENO=$(bash scripts/deno.sh) || exit 1
export PATH="$PG_BIN:$PATH"
pg_ensure_packages || exit 1
command -v pgcopydb >/dev/null || { echo "error: pgcopydb is not installed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-bench.XXXXXX")
chmod 755 "$work"
cleanup() {
  pg_stop "$work/source"
  pg_stop "$work/target"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start source "$work/source" logical || exit 1
SOURCE=$PG_URI
pg_start target "$work/target" || exit 1
TARGET_BASE=${PG_URI%/postgres}
TARGET_ADMIN=$PG_URI

echo "pgbench -i -s $SCALE on the source..." >&2
pgbench -i -q -s "$SCALE" "$SOURCE" >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log"; exit 1; }
psql -X -q "$SOURCE" -c "vacuum analyze" -c "checkpoint" || exit 1
size=$(psql -X -At "$SOURCE" -c "select pg_size_pretty(pg_database_size(current_database()))")
echo "source database: $size; $(nproc) CPUs; jobs $JOBS" >&2

pgferry() { "$DENO" run -A --quiet "$top/main.ts" "$@"; }

fresh_db() { # fresh_db NAME → prints its URI; both clusters checkpointed
  psql -X -q "$TARGET_ADMIN" -c "drop database if exists $1 with (force)" >/dev/null 2>&1
  psql -X -q "$TARGET_ADMIN" -c "create database $1" -c "checkpoint" >/dev/null || exit 1
  psql -X -q "$SOURCE" -c "checkpoint" >/dev/null || exit 1
  echo "$TARGET_BASE/$1"
}

now() { date +%s.%N; }

run_pgferry() {
  local target; target=$(fresh_db b_pgferry)
  rm -rf "$work/pgferry-dir"
  local start; start=$(now)
  # shellcheck disable=SC2086
  pgferry clone --source "$SOURCE" --target "$target" --dir "$work/pgferry-dir" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" $PGFERRY_ARGS >"$work/pgferry.out" 2>"$work/pgferry.err" ||
    { cat "$work/pgferry.err" >&2; return 1; }
  echo "$(now) - $start" | bc
}

run_pgcopydb() {
  local target; target=$(fresh_db b_pgcopydb)
  rm -rf "$work/pgcopydb-dir"
  local start; start=$(now)
  pgcopydb clone --source "$SOURCE" --target "$target" --dir "$work/pgcopydb-dir" \
    --table-jobs "$JOBS" --index-jobs "$JOBS" >"$work/pgcopydb.log" 2>&1 ||
    { tail -n 20 "$work/pgcopydb.log" >&2; return 1; }
  echo "$(now) - $start" | bc
}

run_dump() {
  local target; target=$(fresh_db b_dump)
  local start; start=$(now)
  pg_dump -Fc "$SOURCE" | pg_restore --dbname "$target" 2>"$work/dump.err" ||
    { cat "$work/dump.err" >&2; return 1; }
  echo "$(now) - $start" | bc
}

run_copy() {
  local target; target=$(fresh_db b_copy)
  psql -X -q "$target" -c "create table pgbench_accounts (aid integer not null, bid integer, abalance integer, filler character(84)) with (fillfactor = 100)" || return 1
  local start; start=$(now)
  psql -X -q "$SOURCE" -c "copy pgbench_accounts to stdout" |
    psql -X -q "$target" -c "copy pgbench_accounts from stdin" || return 1
  echo "$(now) - $start" | bc
}

check() { # check NAME DB: compare data against the source
  if pgferry compare data --source "$SOURCE" --target "$TARGET_BASE/$2" >"$work/compare-$1.out" 2>&1; then
    echo "  $1: target equals source (compare data)" >&2
  else
    echo "  $1: TARGET DIFFERS FROM SOURCE" >&2
    cat "$work/compare-$1.out" >&2
    failed=1
  fi
}

contenders=(pgferry pgcopydb dump copy)
declare -A times
failed=0
echo "warm-up run (not counted)..." >&2
run_dump >/dev/null || exit 1
for ((round = 0; round < ROUNDS; round++)); do
  for ((i = 0; i < ${#contenders[@]}; i++)); do
    name=${contenders[$(((i + round) % ${#contenders[@]}))]}
    t=$("run_$name") || { echo "error: $name failed" >&2; exit 1; }
    times[$name]="${times[$name]:-} $t"
    printf 'round %d  %-9s %6.2f s\n' "$((round + 1))" "$name" "$t" >&2
  done
  if [ "$round" -eq 0 ]; then
    check pgferry b_pgferry
    check pgcopydb b_pgcopydb
    check dump b_dump
    /usr/bin/time -f '%M' -o "$work/rss.kb" "$DENO" run -A --quiet "$top/main.ts" clone \
      --source "$SOURCE" --target "$(fresh_db b_rss)" --dir "$work/rss-dir" --table-jobs "$JOBS" \
      --index-jobs "$JOBS" $PGFERRY_ARGS >/dev/null 2>"$work/rss.err" || true
    pgferry_max_rss=$(tail -n 1 "$work/rss.kb" 2>/dev/null)
    rm -rf "$work/rss-dir"
  fi
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A med
for name in "${contenders[@]}"; do med[$name]=$(echo "${times[$name]}" | median); done

echo
echo "pgbench scale $SCALE ($size), $ROUNDS rounds, $(nproc) CPUs, --table-jobs/--index-jobs $JOBS"
printf '%-34s %8s   %s\n' "contender" "median" "all runs (s)"
printf '%-34s %7.2fs  %s\n' "pgferry clone" "${med[pgferry]}" "${times[pgferry]}"
printf '%-34s %7.2fs  %s\n' "pgcopydb clone (0.10)" "${med[pgcopydb]}" "${times[pgcopydb]}"
printf '%-34s %7.2fs  %s\n' "pg_dump -Fc | pg_restore" "${med[dump]}" "${times[dump]}"
printf '%-34s %7.2fs  %s\n' "COPY | COPY of pgbench_accounts" "${med[copy]}" "${times[copy]}"
echo
printf 'pgferry / pg_dump|pg_restore   %.2f   (target <= 0.95)\n' "$(echo "${med[pgferry]} / ${med[dump]}" | bc -l)"
printf 'pgferry / pgcopydb             %.2f   (target <= 0.75)\n' "$(echo "${med[pgferry]} / ${med[pgcopydb]}" | bc -l)"
printf 'pgferry / raw COPY floor       %.2f\n' "$(echo "${med[pgferry]} / ${med[copy]}" | bc -l)"
echo "pgferry max RSS: ${pgferry_max_rss:-?} kB"
echo
echo "last pgferry run:"
cat "$work/pgferry.out"
exit "$failed"
