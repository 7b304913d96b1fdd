#!/usr/bin/env bash
# Builds the single pgferry binary with `deno compile`. Before compiling it
# checks everything that does not need Deno's `denort` runtime:
#   1. deno check of main.ts and of every Worker entry point (frozen lockfile)
#   2. every module loaded with new URL("./x.ts", import.meta.url) is in WORKERS,
#      so that --include embeds it
#   3. deno bundle of main.ts and the Workers: the whole module graph resolves
#   4. the bundle runs with the binary's permissions (and no more): version,
#      stream sentinel setup / set endpos / get on a scratch --dir
# deno compile then downloads denort from dl.deno.land, unless DENORT_BIN
# points at a denort binary of the same Deno version and of the target.
#
# Usage: scripts/compile.sh [TARGET...]   TARGET: host (default), linux-x64, linux-arm64,
#                                         macos-x64, macos-arm64, all
#        scripts/compile.sh --permissions  print the binary's permission flags, e.g. for
#                                         deno run $(bash scripts/compile.sh --permissions) main.ts
# Output: dist/pgferry for host, dist/pgferry-TARGET otherwise.
# Exit:   0 built, 1 a check or the compile failed, 2 usage, 3 denort could not be had.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Worker modules: supervisor.ts starts them with new Worker(new URL(...)).
WORKERS=(lib/follow/receive_worker.ts lib/follow/apply_worker.ts)

# What the binary may do. Paths, hosts and ports are only known at run time
# (--dir, --source, --target, --host), so read, write and net are not narrowed.
PERMISSIONS=(
  # --dir (catalog, spool), --secret-file, --tls-*, sslrootcert
  --allow-read
  --allow-write
  # source, target, the coordinator and its clients
  --allow-net
  # PGFERRY_*, PGCOPYDB_* and libpq's PG*; TMPDIR for the default --dir; user name fallbacks
  "--allow-env=PG*,TMPDIR,USER,USERNAME,LOGNAME"
  # hostname: who changed the sentinel; uid,gid,userInfo: the OS user as default database user
  "--allow-sys=hostname,uid,gid,userInfo"
  # clone's schema dump and restore, by name on PATH (an absolute path would be refused)
  "--allow-run=pg_dump,pg_restore"
  # fail, never ask: the binary runs in containers and CI
  --no-prompt
)

if [ "${1:-}" = --permissions ]; then
  echo "${PERMISSIONS[*]}"
  exit 0
fi

triple_of() {
  case $1 in
    linux-x64) echo x86_64-unknown-linux-gnu ;;
    linux-arm64) echo aarch64-unknown-linux-gnu ;;
    macos-x64) echo x86_64-apple-darwin ;;
    macos-arm64) echo aarch64-apple-darwin ;;
    *) return 1 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(host)
[ "${targets[*]}" = all ] && targets=(linux-x64 linux-arm64 macos-x64 macos-arm64)
for target in "${targets[@]}"; do
  if [ "$target" != host ] && ! triple_of "$target" >/dev/null; then
    echo "error: unknown target \"$target\"" >&2
    echo "usage: scripts/compile.sh [host|linux-x64|linux-arm64|macos-x64|macos-arm64|all]..." >&2
    exit 2
  fi
done
if [ -n "${DENORT_BIN:-}" ] && [ ${#targets[@]} -gt 1 ]; then
  echo "error: DENORT_BIN is the runtime of one target: build one target at a time" >&2
  exit 2
fi

DENO=$(bash scripts/deno.sh)
deno_version=$("$DENO" --version | head -n 1 | awk '{print $2}')
host_triple=$("$DENO" --version | head -n 1 | sed -E 's/.*, ([^)]+)\)$/\1/')
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-compile.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

echo "== 1/4 deno check main.ts ${WORKERS[*]}"
"$DENO" check --frozen --quiet main.ts "${WORKERS[@]}"

echo "== 2/4 every Worker module is embedded"
found=()
while IFS=: read -r file rel; do
  module=$(realpath -m --relative-to=. "$(dirname "$file")/$rel")
  if [[ " ${WORKERS[*]} " != *" $module "* ]]; then
    echo "error: $file loads \"$module\", which is not in WORKERS of scripts/compile.sh" >&2
    exit 1
  fi
  found+=("$module")
  echo "   $module (from $file)"
done < <(grep -rEo 'new URL\("\./[^"]+\.ts", import\.meta\.url\)' main.ts cli lib |
  sed -E 's/^([^:]+):new URL\("([^"]+)".*/\1:\2/')
for worker in "${WORKERS[@]}"; do
  if [[ " ${found[*]} " != *" $worker "* ]]; then
    echo "error: no new URL(\"./…\", import.meta.url) loads $worker: update WORKERS" >&2
    exit 1
  fi
done

echo "== 3/4 deno bundle main.ts ${WORKERS[*]}"
"$DENO" bundle --quiet --frozen --platform deno --outdir "$scratch/bundle" main.ts "${WORKERS[@]}"

echo "== 4/4 the bundle runs with the binary's permissions"
run() { "$DENO" run --no-config --quiet "${PERMISSIONS[@]}" "$scratch/bundle/main.js" "$@"; }
run version
run stream sentinel setup --dir "$scratch/dir" 0/1 >/dev/null
run stream sentinel set endpos 0/2 --dir "$scratch/dir" >/dev/null
[ "$(run stream sentinel get --endpos --dir "$scratch/dir")" = 0/2 ]
echo "   version, stream sentinel setup / set endpos / get: ok"

mkdir -p dist
for target in "${targets[@]}"; do
  if [ "$target" = host ]; then
    output=dist/pgferry
    triple=$host_triple
  else
    output=dist/pgferry-$target
    triple=$(triple_of "$target")
  fi
  echo "== deno compile $triple -> $output"
  includes=()
  for worker in "${WORKERS[@]}"; do includes+=(--include "$worker"); done
  # --no-check: step 1 checked the same modules with the same configuration.
  if ! "$DENO" compile --frozen --no-check --target "$triple" --output "$output" \
    "${includes[@]}" "${PERMISSIONS[@]}" main.ts 2>"$scratch/compile.err"; then
    cat "$scratch/compile.err" >&2
    if grep -qE 'dl\.deno\.land|denort' "$scratch/compile.err"; then
      {
        echo
        echo "error: deno compile could not get the denort runtime for $triple (Deno $deno_version)"
        echo "Everything before it passed: type check, Worker includes, module graph, permissions."
        echo "hint: deno compile needs either network access to https://dl.deno.land, or"
        echo "      DENORT_BIN=/path/to/denort, the denort binary of Deno $deno_version for $triple"
        echo "      (denort-$triple.zip of the Deno $deno_version release; not the deno CLI itself)"
      } >&2
      exit 3
    fi
    exit 1
  fi
  echo "   built $output"
done
