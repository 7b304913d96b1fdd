#!/usr/bin/env bash
# Throwaway local PostgreSQL clusters for tests, the demo and benchmarks.
#
#   source scripts/pg.sh
#   pg_ensure_packages            # PostgreSQL server, wal2json, openssl present (apt when root)
#   pg_start NAME DIR [logical]   # initdb + start on a free port; sets PG_PORT, PG_URI
#   pg_stop DIR                   # fast shutdown
#   pg_tls_files DIR              # a throwaway CA and server certificate; prints the conf lines
#
# Clusters run as the postgres user when we are root (initdb refuses root),
# listen on 127.0.0.1 and a Unix socket inside DIR, and trust local connections.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

pg_ensure_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
  [ -f /usr/lib/postgresql/15/lib/wal2json.so ] || missing+=(postgresql-15-wal2json)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
      { echo "error: could not install ${missing[*]}" >&2; return 1; }
  else
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "hint: run as root: apt-get install ${missing[*]}" >&2
    return 1
  fi
}

# pg_start NAME DIR [logical] [extra postgresql.conf lines...]
pg_start() {
  local name=$1 dir=$2 logical=${3:-} port
  shift 3 2>/dev/null || shift $#
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 200"
    echo "max_replication_slots = 20"
    echo "max_wal_senders = 20"
    echo "shared_buffers = 256MB"
    echo "max_wal_size = 4GB"
    echo "log_min_messages = warning"
    [ "$logical" = logical ] && echo "wal_level = logical"
    for line in "$@"; do echo "$line"; done
  } | pg_as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
  echo "host replication all 127.0.0.1/32 trust" | pg_as_owner tee -a "$dir/data/pg_hba.conf" >/dev/null
  echo "local replication all trust" | pg_as_owner tee -a "$dir/data/pg_hba.conf" >/dev/null
  for _ in 1 2 3 4 5; do
    port=$(pg_free_port)
    if pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -o "-p $port" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
      PG_PORT=$port
      PG_URI="postgres://postgres@127.0.0.1:$port/postgres"
      echo "$name cluster on port $port ($dir)" >&2
      return 0
    fi
  done
  echo "error: could not start the $name cluster" >&2
  tail -n 20 "$dir/server.log" >&2
  return 1
}

# pg_tls_files DIR: a throwaway CA (DIR/ca.crt) and a server certificate it signed for 127.0.0.1
# and localhost (DIR/server.crt, DIR/server.key, the key readable by the cluster's owner only).
# Prints the postgresql.conf lines that turn TLS on with them, for pg_start.
pg_tls_files() {
  local dir=$1
  command -v openssl >/dev/null || { echo "error: openssl is not installed" >&2; return 1; }
  mkdir -p "$dir" || return 1
  (
    cd "$dir" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=pgferry test CA" -keyout ca.key -out ca.crt &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout server.key -out server.csr &&
      printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.crt
  ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; return 1; }
  chmod 600 "$dir/server.key"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/server.key" "$dir/server.crt"; fi
  echo "ssl = on"
  echo "ssl_cert_file = '$dir/server.crt'"
  echo "ssl_key_file = '$dir/server.key'"
}

pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}
