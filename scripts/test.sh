#!/usr/bin/env bash
# The one test command: bootstraps Deno, makes sure PostgreSQL and wal2json are
# installed, starts a source (wal_level=logical), a target, and a source reached
# over TLS (a throwaway CA) on free ports in a temporary directory, runs
# `deno test`, prints "N passed, N failed" last, and always stops the clusters.
# Usage: scripts/test.sh [deno test args]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

DENO=$(bash scripts/deno.sh) || exit 1
export PATH="$(dirname "$DENO"):$PATH"
pg_ensure_packages || exit 1

work=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-test.XXXXXX")
chmod 755 "$work"
cleanup() {
  pg_stop "$work/source"
  pg_stop "$work/target"
  pg_stop "$work/tls"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start source "$work/source" logical "fsync = off" || exit 1
export PGFERRY_TEST_SOURCE_PGURI=$PG_URI
pg_start target "$work/target" "" "fsync = off" || exit 1
export PGFERRY_TEST_TARGET_PGURI=$PG_URI
mapfile -t tls_conf < <(pg_tls_files "$work/tls-files") && [ ${#tls_conf[@]} -gt 0 ] || exit 1
pg_start tls "$work/tls" logical "fsync = off" "${tls_conf[@]}" || exit 1
export PGFERRY_TEST_TLS_PGURI=$PG_URI PGFERRY_TEST_TLS_CA="$work/tls-files/ca.crt"
export PGFERRY_TEST_SOURCE_DIR="$work/source" PGFERRY_TEST_TARGET_DIR="$work/target"
export PGFERRY_TEST_TMP="$work/tmp"
mkdir -p "$PGFERRY_TEST_TMP"

out="$work/deno-test.out"
# A hung test must not eat CI's whole budget: stop the run after PGFERRY_TEST_TIMEOUT seconds.
NO_COLOR=1 timeout -k 30 "${PGFERRY_TEST_TIMEOUT:-4500}" "$DENO" test -A --no-check=remote "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

summary=$(grep -E '^(ok|FAILED) \| ' "$out" | tail -n 1)
passed=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
failed=$(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
passed=${passed:-0}
failed=${failed:-0}
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
