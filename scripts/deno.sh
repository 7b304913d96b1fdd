#!/usr/bin/env bash
# Prints the path of a deno binary, installing the pinned version from the npm
# registry into .tools/ when none is on PATH. Usage: DENO=$(bash scripts/deno.sh)
set -euo pipefail
DENO_VERSION=2.9.6
top=$(cd "$(dirname "$0")/.." && pwd)
if command -v deno >/dev/null 2>&1; then
  command -v deno
  exit 0
fi
local_deno="$top/.tools/deno/node_modules/.bin/deno"
if [ -x "$local_deno" ] && "$local_deno" --version 2>/dev/null | grep -q "deno $DENO_VERSION"; then
  echo "$local_deno"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "error: deno is not on PATH and npm is missing: cannot install deno $DENO_VERSION" >&2
  echo "hint: install Node.js and npm, or put deno $DENO_VERSION on PATH" >&2
  exit 1
fi
echo "installing deno $DENO_VERSION from the npm registry into .tools/deno" >&2
mkdir -p "$top/.tools/deno"
npm install --silent --no-audit --no-fund --prefix "$top/.tools/deno" "deno@$DENO_VERSION" >&2
"$local_deno" --version >/dev/null
echo "$local_deno"
