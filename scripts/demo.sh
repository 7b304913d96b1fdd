#!/usr/bin/env bash
# pgferry's main job, end to end, in a few minutes:
#   clone --follow from a source that is being written to, endpos set over TCP
#   while it runs, then compare data reporting equality.
#
#   bash scripts/demo.sh                      # two throwaway local clusters
#   bash scripts/demo.sh --source URI --target URI
#
# Environment: SCALE (pgbench scale, default 5), LOAD_SECONDS (default 15).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

SOURCE="" TARGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --source) SOURCE=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown argument \"$1\"" >&2; sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done
if { [ -n "$SOURCE" ] && [ -z "$TARGET" ]; } || { [ -z "$SOURCE" ] && [ -n "$TARGET" ]; }; then
  echo "error: give both --source and --target, or neither" >&2
  exit 2
fi

DENO=$(bash scripts/deno.sh)
pgferry() { "$DENO" run -A --quiet "$top/main.ts" "$@"; }
SCALE=${SCALE:-5}
LOAD_SECONDS=${LOAD_SECONDS:-15}
work=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-demo.XXXXXX")
chmod 755 "$work"
DIR="$work/pgferry"
follow_pid="" load_pid=""

cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -n "$follow_pid" ] && kill "$follow_pid" 2>/dev/null || true
  if [ -n "${SOURCE:-}" ]; then
    pgferry stream cleanup --source "$SOURCE" --target "$TARGET" --slot-name pgferry_demo \
      --origin pgferry_demo >/dev/null 2>&1 || true
  fi
  if [ -n "${own_clusters:-}" ]; then
    pg_stop "$work/source"
    pg_stop "$work/target"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

if [ -z "$SOURCE" ]; then
  pg_ensure_packages
  step "starting two throwaway PostgreSQL clusters in $work"
  own_clusters=1
  pg_start source "$work/source" logical
  SOURCE=$PG_URI
  pg_start target "$work/target"
  TARGET=$PG_URI
fi
PGBENCH=$PG_BIN/pgbench
PSQL=(psql -X -q -v ON_ERROR_STOP=1)

step "loading a sample database on the source: pgbench scale $SCALE and a schema of tricky cases"
"$PGBENCH" -i -q -s "$SCALE" "$SOURCE" 2>&1 | tail -n 1
"${PSQL[@]}" -d "$SOURCE" -f tests/fixtures/decode/schema.sql
"${PSQL[@]}" -d "$SOURCE" -f tests/fixtures/decode/dml.sql

PORT=$(pg_free_port)
step "pgferry clone --follow (coordinator on 127.0.0.1:$PORT) while pgbench writes for ${LOAD_SECONDS}s"
pgferry clone --follow --source "$SOURCE" --target "$TARGET" --dir "$DIR" \
  --slot-name pgferry_demo --origin pgferry_demo --port "$PORT" &
follow_pid=$!
pgferry stream sentinel ping --host 127.0.0.1 --port "$PORT" --wait 60 >/dev/null
"$PGBENCH" -n -c 2 -T "$LOAD_SECONDS" "$SOURCE" >"$work/pgbench.log" 2>&1 &
load_pid=$!
while kill -0 "$load_pid" 2>/dev/null; do
  sleep 3
  pgferry stream sentinel get --host 127.0.0.1 --port "$PORT" --json |
    tr -d '\n ' | sed 's/^/   sentinel: /'
  echo
done
wait "$load_pid" && load_pid=""
grep -E "number of transactions actually processed|tps" "$work/pgbench.log" | sed 's/^/   pgbench: /'

step "setting endpos to the source's current position, over TCP"
pgferry stream sentinel set endpos --current --source "$SOURCE" --host 127.0.0.1 --port "$PORT"
wait "$follow_pid" && follow_pid=""
pgferry stream sentinel get --dir "$DIR"

step "comparing the data of every table"
pgferry compare data --source "$SOURCE" --target "$TARGET"
step "done: the target equals the source at endpos"
