#!/usr/bin/env bash
# Benchmarks (not tests): pgferry side by side with its peers, in one run, on the same data.
#
#   bash scripts/bench.sh [--quick] [--no-clone] [--keep]
#
# CDC apply, for three workloads (pgbench tpcb-like, bulk inserts in large transactions, many
# tiny transactions) and two modes:
#   backlog  every consumer's slot (and subscription, disabled) exists before the load; after the
#            load a marker row is committed and endpos = pg_current_wal_flush_lsn(); then each
#            consumer in turn consumes the backlog (after a checkpoint on both clusters, so that
#            none inherits the dirty pages of the one before, and with its target's files read
#            into the OS cache, as a running target's are: a machine that pages out files idle for
#            a minute would otherwise make each round slower than the one before, since the later
#            rounds' targets wait longer for their turn): time from its start until the
#            marker row is on its target (pg_recvlogical: until it exits at endpos).
#   live     one load per consumer and round, the consumer running during it: lag = time from the
#            marker's commit (the load's end) until the marker is on the target.
# Consumers: pgferry follow; native logical replication (publication + subscription,
# copy_data=false); pgcopydb 0.10 follow (wal2json, with a timeout; its failure is reported);
# pg_recvlogical --start -E endpos -f /dev/null (test_decoding, and pgoutput in backlog mode) as the
# decoding limit. Every target starts from the same template (verified equal to the source's) and
# is compared with the source (per-table count + md5 of the rows in key order) before its time is
# reported. Peak RSS of pgferry from /usr/bin/time (else VmHWM polled from /proc).
# Prints the tables and ratios (pgferry ÷ peer) and writes bench/results/cdc-<date>.json.
# At the end, runs bench/clone.sh when it exists (skip with --no-clone or BENCH_CLONE=0).
#
# Sizes (environment):
#   BENCH_SCALE=20 BENCH_PGBENCH_TXNS=40000 BENCH_CLIENTS=4     pgbench -i -s / total -t / -c
#   BENCH_BULK_TXNS=10 BENCH_BULK_ROWS=100000                   bulk: transactions × rows
#   BENCH_TINY_TXNS=50000                                       tiny: single-row transactions
#   BENCH_MODES="backlog live" BENCH_WORKLOADS="pgbench bulk tiny"
#   BENCH_ROUNDS=3   backlog rounds: every consumer gets a copy of the backlog (its own slot and
#                    target) per round and the consumers take turns, round after round, so that
#                    a slow moment of the machine falls on all; live rounds: one load each, the
#                    consumers in a rotating order; tables and ratios use the median (pgcopydb:
#                    one round, as each of its failures waits out a timeout)
#   BENCH_LIVE_ROUNDS=BENCH_ROUNDS   live rounds, when they should differ (live takes longest)
#   BENCH_CONSUMERS="recvlogical native pgferry pgcopydb"
#   BENCH_PGFERRY_PLUGIN=pgoutput BENCH_TIMEOUT=300 (per consumer)
#   BENCH_PGCOPYDB_TIMEOUT=60 BENCH_PGCOPYDB_LIVE_TIMEOUT=30 (after the load ends)
#   --quick = scale 2, 4000 pgbench txns, 4 × 20000 bulk rows, 5000 tiny txns, 1 round
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

quick=0
keep=0
clone=${BENCH_CLONE:-1}
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --no-clone) clone=0 ;;
    --keep) keep=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "error: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done
if [ "$quick" = 1 ]; then
  : "${BENCH_SCALE:=2}" "${BENCH_PGBENCH_TXNS:=4000}" "${BENCH_BULK_TXNS:=4}"
  : "${BENCH_BULK_ROWS:=20000}" "${BENCH_TINY_TXNS:=5000}" "${BENCH_PGCOPYDB_TIMEOUT:=20}"
  : "${BENCH_PGCOPYDB_LIVE_TIMEOUT:=10}" "${BENCH_ROUNDS:=1}"
fi
SCALE=${BENCH_SCALE:-20}
PGBENCH_TXNS=${BENCH_PGBENCH_TXNS:-40000}
CLIENTS=${BENCH_CLIENTS:-4}
BULK_TXNS=${BENCH_BULK_TXNS:-10}
BULK_ROWS=${BENCH_BULK_ROWS:-100000}
TINY_TXNS=${BENCH_TINY_TXNS:-50000}
MODES=${BENCH_MODES:-backlog live}
ROUNDS=${BENCH_ROUNDS:-3}
LIVE_ROUNDS=${BENCH_LIVE_ROUNDS:-$ROUNDS}
WORKLOADS=${BENCH_WORKLOADS:-pgbench bulk tiny}
CONSUMERS=${BENCH_CONSUMERS:-recvlogical native pgferry pgcopydb}
FERRY_PLUGIN=${BENCH_PGFERRY_PLUGIN:-pgoutput}
TIMEOUT=${BENCH_TIMEOUT:-300}
PGCOPYDB_TIMEOUT=${BENCH_PGCOPYDB_TIMEOUT:-60}
PGCOPYDB_LIVE_TIMEOUT=${BENCH_PGCOPYDB_LIVE_TIMEOUT:-30}
PGBENCH_TXNS=$((PGBENCH_TXNS / CLIENTS * CLIENTS))
TINY_TXNS=$((TINY_TXNS / CLIENTS * CLIENTS))
# md5 over the rows' text needs it under 1 GB per table; hash rows first beyond that.
rowhash=0
if [ "$SCALE" -gt 40 ] || [ $((BULK_TXNS * BULK_ROWS)) -gt 5000000 ] || [ "$TINY_TXNS" -gt 5000000 ]; then
  rowhash=1
fi

DENO=$(bash scripts/deno.sh)
PGCOPYDB=${PGCOPYDB:-$(command -v pgcopydb || true)}
GNU_TIME=/usr/bin/time
[ -x "$GNU_TIME" ] && "$GNU_TIME" -f %M -o /dev/null true 2>/dev/null || GNU_TIME=
pg_ensure_packages

work=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-bench.XXXXXX")
chmod 755 "$work"
records=$work/records.tsv
: >"$records"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
results_dir=$top/bench/results
bg_groups=()

cleanup() {
  local g
  for g in "${bg_groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  pg_stop "$work/source"
  pg_stop "$work/target"
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { echo "$EPOCHREALTIME"; }
# nap seconds: sleep(1) without the fork and exec. The loops that poll while a consumer is timed
# ran sleep 0.02: that took 18% of a core (0.77 s of CPU in 4.3 s), lost to the consumer on a
# 2-core machine. read -t on a pipe that never gets data waits without a process.
exec {nap_fd}<> <(:)
nap() { read -rt "$1" -u "$nap_fd" || true; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# pgferry runs from a copy of the working tree taken now, so that edits made while the benchmark
# runs do not change (or break) what is measured; retried while the tree does not load.
tree=$work/pgferry
snapshot_tree() {
  local try
  for try in 1 2 3 4 5 6; do
    rm -rf "$tree"
    mkdir -p "$tree"
    cp -r "$top/main.ts" "$top/deno.json" "$top/deno.lock" "$top/lib" "$top/cli" "$tree/"
    if (cd "$tree" && "$DENO" cache --quiet main.ts lib/follow/*_worker.ts >"$work/snapshot.log" 2>&1); then
      return 0
    fi
    log "the working tree does not load (try $try): $(grep -m1 -i error "$work/snapshot.log")"
    sleep 10
  done
  cat "$work/snapshot.log" >&2
  return 1
}
if [ "${BENCH_NO_SNAPSHOT:-0}" = 1 ]; then tree=$top; else snapshot_tree; fi
tree_id="$(git -C "$top" rev-parse --short HEAD 2>/dev/null)$(git -C "$top" diff --quiet HEAD 2>/dev/null || echo "+dirty")"
[ "$tree" != "$top" ] && tree_id+=" (tree $(cd "$tree" && find . -type f -name '*.ts' | sort | xargs cat | md5sum | cut -c1-8))"

# Slots per backlog round: pg_recvlogical's two, pgferry's, native's; plus pgcopydb's. On the
# target, the same bound counts replication origins.
slots="max_replication_slots = $((ROUNDS * 4 + 8))"
pg_start source "$work/source" logical "$slots" "max_wal_senders = $((ROUNDS * 4 + 8))"
SRC_PORT=$PG_PORT
# The logical replication launcher starts at most one apply worker per wal_retrieve_retry_interval
# (5 s by default): a native round enabled soon after the one before would wait for it.
pg_start target "$work/target" "" "wal_retrieve_retry_interval = 100ms" "$slots"
TGT_PORT=$PG_PORT
src() { echo "postgres://postgres@127.0.0.1:$SRC_PORT/$1"; }
tgt() { echo "postgres://postgres@127.0.0.1:$TGT_PORT/$1"; }
sq() { local db=$1; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$(src "$db")" "$@"; }
tq() { local db=$1; shift; PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$(tgt "$db")" "$@"; }
ferry() { "$DENO" run -A "$tree/main.ts" "$@"; }

# record key=value… : one result, tab-separated, for bench/cdc_report.ts
record() {
  local line="" kv
  for kv in "$@"; do line+="${kv//$'\t'/ }"$'\t'; done
  printf '%s\n' "${line%$'\t'}" >>"$records"
}

# ---------------------------------------------------------------- data and checks

rows_per_txn() { case $1 in pgbench) echo 4 ;; bulk) echo "$BULK_ROWS" ;; tiny) echo 1 ;; esac; }
txns_of() { case $1 in pgbench) echo "$PGBENCH_TXNS" ;; bulk) echo "$BULK_TXNS" ;; tiny) echo "$TINY_TXNS" ;; esac; }
# the table with one row per workload transaction (how much of a failed run was applied)
progress_sql() {
  case $1 in
    pgbench) echo "select count(*) from pgbench_history" ;;
    bulk) echo "select count(*) / $BULK_ROWS from bulk" ;;
    tiny) echo "select count(*) from tiny" ;;
  esac
}

make_template() { # workload cluster(sq|tq)
  local w=$1 q=$2 uri
  $q postgres -c "drop database if exists tpl_$w" -c "create database tpl_$w"
  if [ "$q" = sq ]; then uri=$(src "tpl_$w"); else uri=$(tgt "tpl_$w"); fi
  case $w in
    pgbench) "$PG_BIN/pgbench" -i -q -s "$SCALE" "$uri" >/dev/null 2>&1 ;;
    bulk) $q "tpl_$w" -c "create table bulk (id bigint primary key, n integer, t text)" ;;
    tiny) $q "tpl_$w" -c "create table tiny (id bigserial primary key, client integer, t text)" ;;
  esac
  $q "tpl_$w" -c "create table bench_marker (id integer primary key, at timestamptz)" -c "vacuum analyze"
  if [ "$q" = tq ]; then $q "tpl_$w" -c "create extension pg_prewarm" >/dev/null; fi
}

warm_target() { # db: its tables and indexes into the OS cache (pg_prewarm 'read')
  if [ -n "$1" ]; then
    tq "$1" -c "select sum(pg_prewarm(oid, 'read')) from pg_class where relkind in ('r', 'i', 't', 'm') and relpersistence = 'p'" >/dev/null
  fi
}

# checksum q db: "table|count|md5" for every table of schema public, rows in primary-key order
checksum() {
  local row='t::text'
  [ "$rowhash" = 1 ] && row='md5(t::text)'
  $1 "$2" -F'|' <<SQL
set work_mem = '1GB';
select format(\$f\$select %L, count(*), coalesce(md5(string_agg($row, E'\\n')), '-') from (select * from %I.%I t order by %s) t\$f\$,
  c.relname, n.nspname, c.relname,
  coalesce((select string_agg(quote_ident(a.attname), ', ' order by array_position(i.indkey::int2[], a.attnum))
              from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
             where i.indrelid = c.oid and i.indisprimary), 't::text'))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'public' and c.relkind in ('r', 'p')
 order by c.relname
\gexec
SQL
}

# compare_with_source tdb srcsum_file → prints "ok" or the first differing table
compare_with_source() {
  local tsum
  tsum=$(checksum tq "$1" 2>&1) || { echo "checksum failed: ${tsum%%$'\n'*}"; return; }
  if [ "$tsum" = "$(cat "$2")" ]; then
    echo ok
  else
    # first differing table: "target differs: bulk 60000 rows (md5 …) vs source 80000 rows (md5 …)"
    awk -F'|' 'NR == FNR { t[$1] = $2 " rows (md5 " substr($3, 1, 8) ")"; next }
      { s = $2 " rows (md5 " substr($3, 1, 8) ")"; if (t[$1] != s) { printf "target differs: %s %s vs source %s\n", $1, (t[$1] == "" ? "missing" : t[$1]), s; exit } }' \
      <(echo "$tsum") "$2"
  fi
}

# ---------------------------------------------------------------- resets

reset_source() { # workload
  local slots
  sq postgres -c "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'bench' and pid <> pg_backend_pid()" >/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    slots=$(sq postgres -c "select count(*) from pg_replication_slots where active")
    [ "$slots" = 0 ] && break
    sleep 0.2
  done
  sq postgres -c "select pg_drop_replication_slot(slot_name) from pg_replication_slots" >/dev/null
  sq postgres -c "drop database if exists bench" -c "create database bench template tpl_$1 strategy file_copy"
  sq bench -c "create publication bench_pub for tables in schema public"
}

reset_target() { # workload db…
  local w=$1 db s
  shift
  for db in $(tq postgres -c "select datname from pg_database where datname like 't\_%'"); do
    for s in $(tq "$db" -c "select subname from pg_subscription s join pg_database d on d.oid = s.subdbid where d.datname = current_database()"); do
      tq "$db" -c "alter subscription $s disable" -c "alter subscription $s set (slot_name = none)" -c "drop subscription $s"
    done
  done
  tq postgres -c "select pg_terminate_backend(pid) from pg_stat_activity where datname like 't\_%' and pid <> pg_backend_pid()" >/dev/null
  tq postgres -c "select pg_replication_origin_drop(roname) from pg_replication_origin" >/dev/null
  for db in $(tq postgres -c "select datname from pg_database where datname like 't\_%'"); do
    tq postgres -c "drop database $db"
  done
  for db in "$@"; do tq postgres -c "create database $db template tpl_$w strategy file_copy"; done
}

# ---------------------------------------------------------------- load

run_load() { # workload
  local w=$1
  case $w in
    pgbench)
      "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -t $((PGBENCH_TXNS / CLIENTS)) "$(src bench)" >"$work/load.log" 2>&1
      ;;
    bulk)
      local i
      for ((i = 0; i < BULK_TXNS; i++)); do
        echo "insert into bulk select g, g % 1000, md5(g::text) from generate_series($((i * BULK_ROWS + 1)), $(((i + 1) * BULK_ROWS))) g;"
      done | sq bench -f - >"$work/load.log" 2>&1
      ;;
    tiny)
      echo "insert into tiny (client, t) values (:client_id, 'tiny row');" >"$work/tiny.sql"
      "$PG_BIN/pgbench" -n -M prepared -f "$work/tiny.sql" -c "$CLIENTS" -j 2 -t $((TINY_TXNS / CLIENTS)) "$(src bench)" >"$work/load.log" 2>&1
      ;;
  esac
}

# load_and_mark workload: runs the load, commits the marker row, sets LOAD_SECONDS, MARK_AT (the
# load's end, just before the marker), ENDPOS (after the marker)
load_and_mark() {
  local t0
  t0=$(now)
  run_load "$1"
  MARK_AT=$(now)
  sq bench -c "set synchronous_commit = on" -c "insert into bench_marker values (1, now())"
  ENDPOS=$(sq bench -c "select pg_current_wal_flush_lsn()")
  LOAD_SECONDS=$(sub "$MARK_AT" "$t0")
}

# ---------------------------------------------------------------- waiting

# start_marker_wait tdb file: in the background, writes the time the marker row shows up on tdb
# The waiter commits between polls: one statement looping for the whole load would hold its snapshot,
# and with it the target's xmin, so that no dead row version could be pruned while the consumer applies.
start_marker_wait() {
  (PGAPPNAME=bench_wait tq "$1" -c "do \$\$ begin while not exists (select 1 from public.bench_marker) loop commit; perform pg_sleep(0.005); end loop; end \$\$" >/dev/null 2>&1 &&
    now >"$2") &
  WAITER=$!
}

# await waiter-pid consumer-pid|"" seconds: until the waiter ends, the consumer dies (plus a 3 s
# grace) or the time is up; then stops the waiter
await() {
  local waiter=$1 consumer=$2 deadline grace=""
  deadline=$(awk -v t="$EPOCHREALTIME" -v s="$3" 'BEGIN { printf "%d", t + s }')
  while kill -0 "$waiter" 2>/dev/null; do
    if [ -n "$consumer" ] && [ -z "$grace" ] && ! kill -0 "$consumer" 2>/dev/null; then
      grace=$(awk -v t="$EPOCHREALTIME" 'BEGIN { printf "%d", t + 3 }')
      [ "$grace" -lt "$deadline" ] && deadline=$grace
    fi
    [ "${EPOCHREALTIME%.*}" -ge "$deadline" ] && break
    nap 0.02
  done
  tq postgres -c "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'bench_wait'" >/dev/null
  wait "$waiter" 2>/dev/null || true
}

wait_slot_active() { # slot seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ "$(sq postgres -c "select count(*) from pg_replication_slots where slot_name = '$1' and active")" = 1 ] && return 0
    sleep 0.1
  done
  return 1
}

# launch name cmd…: runs cmd in its own process group in the background; sets LAUNCHED (its pid)
launch() {
  local name=$1
  shift
  setsid "$@" >"$work/$name.log" 2>&1 &
  LAUNCHED=$!
  bg_groups+=("$LAUNCHED")
}

stop_group() { # pid
  kill -TERM -- "-$1" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$1" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# exit code of a finished background pid
rc_of() { local rc=0; wait "$1" 2>/dev/null || rc=$?; echo "$rc"; }

# peak RSS (KiB) of a pgferry run started by launch_ferry
peak_rss() {
  if [ -n "$GNU_TIME" ]; then
    tail -n 1 "$work/$1.rss" 2>/dev/null | grep -E '^[0-9]+$' || echo ""
  else
    cat "$work/$1.hwm" 2>/dev/null || echo ""
  fi
}

launch_ferry() { # name args…
  local name=$1
  shift
  if [ -n "$GNU_TIME" ]; then
    launch "$name" "$GNU_TIME" -f %M -o "$work/$name.rss" "$DENO" run -A "$tree/main.ts" "$@"
  else
    launch "$name" "$DENO" run -A "$tree/main.ts" "$@"
    local pid=$LAUNCHED
    (while kill -0 "$pid" 2>/dev/null; do
      awk '/VmHWM/ { print $2 }' "/proc/$pid/status" >"$work/$name.hwm.tmp" 2>/dev/null &&
        mv "$work/$name.hwm.tmp" "$work/$name.hwm"
      nap 0.1
    done) &
  fi
}

# the most telling error line of a log (a "BUG" line first), without its time and pid
# log_time_since log pattern t0: seconds from t0 (epoch) to the HH:MM:SS.mmm of the first line
# of a pgferry log that matches
log_time_since() {
  local hms
  hms=$(grep -m1 -- "$2" "$1" 2>/dev/null | cut -d' ' -f1) || true
  [ -n "$hms" ] || return 0
  sub "$(date -d "$hms" +%s.%N)" "$3"
}

first_error() { # log
  { grep -m1 -E 'BUG' "$1" || grep -m1 -E 'ERROR|FATAL|error:' "$1"; } 2>/dev/null |
    sed -E 's/^[0-9:.]+ +[0-9]+ +//' | cut -c1-240 || true
}

# ---------------------------------------------------------------- consumers: setup (before the load)

# A backlog round's slots, subscription, work directory and target are named with its suffix
# (SFX: "" in round 1 and in live mode, then _2, _3, …).
setup_consumer() { # consumer mode workload
  local c=$1 mode=$2 w=$3
  case $c in
    recvlogical)
      sq bench -c "select 1 from pg_create_logical_replication_slot('recv$SFX', 'test_decoding')" >/dev/null
      if [ "$mode" = backlog ]; then
        sq bench -c "select 1 from pg_create_logical_replication_slot('recvpg$SFX', 'pgoutput')" >/dev/null
      fi
      ;;
    native)
      sq bench -c "select 1 from pg_create_logical_replication_slot('native$SFX', 'pgoutput')" >/dev/null
      tq "t_native$SFX" -c "create subscription bench_sub$SFX connection 'host=127.0.0.1 port=$SRC_PORT dbname=bench user=postgres' publication bench_pub with (create_slot = false, slot_name = 'native$SFX', copy_data = false, enabled = false)"
      ;;
    pgferry)
      rm -rf "$work/ferry-$mode-$w$SFX"
      ferry stream setup --source "$(src bench)" --target "$(tgt "t_pgferry$SFX")" --dir "$work/ferry-$mode-$w$SFX" \
        --plugin "$FERRY_PLUGIN" --publication bench_pub --slot-name "ferry$SFX" --origin "ferry$SFX" >"$work/ferry-setup.log" 2>&1 ||
        { cat "$work/ferry-setup.log" >&2; return 1; }
      ferry stream sentinel set apply --dir "$work/ferry-$mode-$w$SFX" >/dev/null
      ;;
    pgcopydb)
      rm -rf "$work/pgcopydb-$mode-$w"
      if ! "$PGCOPYDB" stream setup --source "$(src bench)" --target "$(tgt t_pgcopydb)" --dir "$work/pgcopydb-$mode-$w" \
        --slot-name pgcopydb --origin pgcopydb >"$work/pgcopydb-setup.log" 2>&1; then
        PGCOPYDB_SETUP_ERROR=$(first_error "$work/pgcopydb-setup.log")
        return 0
      fi
      "$PGCOPYDB" stream sentinel set apply --source "$(src bench)" >/dev/null 2>&1
      ;;
  esac
}

target_db_of() { case $1 in native) echo "t_native$SFX" ;; pgferry) echo "t_pgferry$SFX" ;; pgcopydb) echo t_pgcopydb ;; *) echo "" ;; esac; }
SFX=""
ROUND=1
suffix_of() { if [ "$1" = 1 ]; then echo ""; else echo "_$1"; fi; } # round

# ---------------------------------------------------------------- backlog mode

backlog() { # workload
  local w=$1 c t0 t1 rc rss verdict err applied sumfile=$work/source.sum dbs=() rows txns r
  rows=$(($(txns_of "$w") * $(rows_per_txn "$w")))
  txns=$(txns_of "$w")
  for ((r = 1; r <= ROUNDS; r++)); do
    SFX=$(suffix_of $r)
    for c in $CONSUMERS; do
      [ "$c" = pgcopydb ] && [ $r -gt 1 ] && continue
      [ -n "$(target_db_of "$c")" ] && dbs+=("$(target_db_of "$c")")
    done
  done
  log "backlog $w: preparing source and targets (${dbs[*]})"
  reset_source "$w"
  reset_target "$w" "${dbs[@]}"
  PGCOPYDB_SETUP_ERROR=
  # pgcopydb first (one round: it fails): its setup writes its sentinel row on the source,
  # which the others must not see
  SFX=""
  if [[ " $CONSUMERS " == *" pgcopydb "* ]]; then setup_consumer pgcopydb backlog "$w"; fi
  for ((r = 1; r <= ROUNDS; r++)); do
    SFX=$(suffix_of $r)
    for c in $CONSUMERS; do
      if [ "$c" != pgcopydb ]; then setup_consumer "$c" backlog "$w"; fi
    done
  done
  log "backlog $w: load ($txns transactions, $rows row changes)"
  load_and_mark "$w"
  log "backlog $w: load took ${LOAD_SECONDS}s; endpos $ENDPOS; checksumming the source"
  checksum sq bench >"$sumfile"
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    SFX=$(suffix_of $ROUND)
    for c in $CONSUMERS; do
      [ "$c" = pgcopydb ] && [ $ROUND -gt 1 ] && continue
      # Each consumer starts from clean buffers, not with the dirty pages of the one before it.
      sq postgres -c checkpoint >/dev/null
      tq postgres -c checkpoint >/dev/null
      warm_target "$(target_db_of "$c")"
      case $c in
        recvlogical)
          local slot plugin opts
          for slot in "recv$SFX" "recvpg$SFX"; do
            if [ "$slot" = "recv$SFX" ]; then plugin=test_decoding opts=(); else plugin=pgoutput opts=(-o proto_version=1 -o publication_names=bench_pub); fi
            t0=$(now)
            rc=0
            timeout "$TIMEOUT" "$PG_BIN/pg_recvlogical" -d "$(src bench)" --slot $slot --start -E "$ENDPOS" \
              "${opts[@]}" -f /dev/null >"$work/recv.log" 2>&1 || rc=$?
            t1=$(now)
            err=""
            [ "$rc" != 0 ] && err="exit $rc: $(first_error "$work/recv.log")"
            record mode=backlog round="$ROUND" workload="$w" consumer="pg_recvlogical ($plugin)" ok=$([ "$rc" = 0 ] && echo 1 || echo 0) \
              seconds="$(sub "$t1" "$t0")" rows="$rows" txns="$txns" load_seconds="$LOAD_SECONDS" verified=n/a error="$err"
            log "backlog $w: round $ROUND: pg_recvlogical ($plugin) $(sub "$t1" "$t0")s rc=$rc"
          done
          ;;
        native)
          rm -f "$work/marker"
          start_marker_wait "t_native$SFX" "$work/marker"
          t0=$(now)
          tq "t_native$SFX" -c "alter subscription bench_sub$SFX enable"
          await "$WAITER" "" "$TIMEOUT"
          finish_backlog native "$w" "$t0" "" "$rows" "$txns" "$sumfile" ""
          tq "t_native$SFX" -c "alter subscription bench_sub$SFX disable"
          ;;
        pgferry)
          rm -f "$work/marker"
          start_marker_wait "t_pgferry$SFX" "$work/marker"
          t0=$(now)
          launch_ferry ferry follow --resume --source "$(src bench)" --target "$(tgt "t_pgferry$SFX")" --dir "$work/ferry-backlog-$w$SFX" \
            --plugin "$FERRY_PLUGIN" --publication bench_pub --slot-name "ferry$SFX" --origin "ferry$SFX" --endpos "$ENDPOS"
          local pid=$LAUNCHED
          await "$WAITER" "$pid" "$TIMEOUT"
          # pgferry exits 0 on its own once everything up to endpos is applied
          local i
          for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; nap 0.02; done
          t1=$(now)
          kill -0 "$pid" 2>/dev/null && stop_group "$pid"
          rc=$(rc_of "$pid")
          err=""
          [ "$rc" != 0 ] && err="exit $rc: $(first_error "$work/ferry.log")"
          cp "$work/ferry.log" "$work/ferry-backlog-$w$SFX.log"
          FERRY_START_S=$(log_time_since "$work/ferry.log" 'receive: streaming from' "$t0")
          FERRY_RECEIVE_S=$(log_time_since "$work/ferry.log" 'receive: reached endpos' "$t0")
          finish_backlog pgferry "$w" "$t0" "$t1" "$rows" "$txns" "$sumfile" "$err" "$(peak_rss ferry)"
          FERRY_RECEIVE_S= FERRY_START_S=
          ;;
        pgcopydb)
          if [ -n "$PGCOPYDB_SETUP_ERROR" ]; then
            record mode=backlog round=1 workload="$w" consumer=pgcopydb ok=0 rows="$rows" txns="$txns" error="stream setup: $PGCOPYDB_SETUP_ERROR"
            continue
          fi
          "$PGCOPYDB" stream sentinel set endpos --source "$(src bench)" "$ENDPOS" >/dev/null 2>&1
          rm -f "$work/marker"
          start_marker_wait t_pgcopydb "$work/marker"
          t0=$(now)
          launch pgcopydb "$PGCOPYDB" follow --source "$(src bench)" --target "$(tgt t_pgcopydb)" --dir "$work/pgcopydb-backlog-$w" \
            --slot-name pgcopydb --origin pgcopydb --resume --not-consistent --endpos "$ENDPOS"
          local pid=$LAUNCHED
          await "$WAITER" "$pid" "$PGCOPYDB_TIMEOUT"
          local alive=0
          kill -0 "$pid" 2>/dev/null && alive=1
          stop_group "$pid"
          rc=$(rc_of "$pid")
          err=$(first_error "$work/pgcopydb.log")
          [ -z "$err" ] && [ "$alive" = 1 ] && [ ! -s "$work/marker" ] && err="no error logged"
          [ "$alive" = 1 ] && [ ! -s "$work/marker" ] && err="timed out after ${PGCOPYDB_TIMEOUT}s; first error: $err"
          [ "$alive" = 0 ] && [ ! -s "$work/marker" ] && err="exited $rc; first error: $err"
          cp "$work/pgcopydb.log" "$work/pgcopydb-backlog-$w.log"
          finish_backlog pgcopydb "$w" "$t0" "" "$rows" "$txns" "$sumfile" "$([ -s "$work/marker" ] || echo "$err")"
          ;;
      esac
    done
  done
  SFX="" ROUND=1
}

# finish_backlog consumer workload t0 t_exit rows txns source-sum error [rss]
finish_backlog() {
  local c=$1 w=$2 t0=$3 texit=$4 rows=$5 txns=$6 sumfile=$7 err=$8 rss=${9:-} seconds="" ok=0 verdict applied exit_seconds=""
  local db
  db=$(target_db_of "$c")
  if [ -s "$work/marker" ]; then
    seconds=$(sub "$(cat "$work/marker")" "$t0")
  elif [ -z "$err" ]; then
    err="the marker row never reached the target within the timeout"
  fi
  [ -n "$texit" ] && exit_seconds=$(sub "$texit" "$t0")
  verdict=$(compare_with_source "$db" "$sumfile")
  applied=$(tq "$db" -c "$(progress_sql "$w")" 2>/dev/null || echo "?")
  if [ "$verdict" = ok ] && [ -n "$seconds" ] && [ -z "$err" ]; then ok=1; fi
  [ "$verdict" != ok ] && [ -z "$err" ] && err="$verdict"
  record mode=backlog round="$ROUND" workload="$w" consumer="$c" ok=$ok seconds="$seconds" exit_seconds="$exit_seconds" rows="$rows" txns="$txns" \
    streaming_seconds="${FERRY_START_S:-}" receive_seconds="${FERRY_RECEIVE_S:-}" \
    load_seconds="$LOAD_SECONDS" verified="$verdict" applied_txns="$applied" peak_rss_kib="$rss" error="$err"
  log "backlog $w: round $ROUND: $c ${seconds:-—}s${exit_seconds:+ (exit ${exit_seconds}s)} verified=$verdict applied=$applied/$txns${rss:+ rss=${rss}KiB}${err:+ error: $err}"
}

# ---------------------------------------------------------------- live mode

live() { # workload consumer
  local w=$1 c=$2 db pid="" rc err="" lag="" rss="" verdict=n/a applied="" ok=0 rows txns sumfile=$work/source.sum ready=1
  rows=$(($(txns_of "$w") * $(rows_per_txn "$w")))
  txns=$(txns_of "$w")
  db=$(target_db_of "$c")
  log "live $w: $c: preparing"
  reset_source "$w"
  if [ -n "$db" ]; then reset_target "$w" "$db"; else reset_target "$w"; fi
  PGCOPYDB_SETUP_ERROR=
  setup_consumer "$c" live "$w"
  rm -f "$work/marker"
  case $c in
    recvlogical)
      # the time is taken when grep sees the marker, not when the pipeline ends
      launch recv bash -c "'$PG_BIN/pg_recvlogical' -d '$(src bench)' --slot recv --start -f - |
        { grep -m1 -q 'table public.bench_marker'; echo \$EPOCHREALTIME >'$work/marker'; }"
      pid=$LAUNCHED
      wait_slot_active recv 20 || ready=0
      ;;
    native)
      tq t_native -c "alter subscription bench_sub enable"
      wait_slot_active native 20 || ready=0
      ;;
    pgferry)
      launch_ferry ferry follow --resume --source "$(src bench)" --target "$(tgt t_pgferry)" --dir "$work/ferry-live-$w" \
        --plugin "$FERRY_PLUGIN" --publication bench_pub --slot-name ferry --origin ferry
      pid=$LAUNCHED
      wait_slot_active ferry 30 || ready=0
      ;;
    pgcopydb)
      if [ -n "$PGCOPYDB_SETUP_ERROR" ]; then
        record mode=live workload="$w" consumer=pgcopydb ok=0 rows="$rows" txns="$txns" error="stream setup: $PGCOPYDB_SETUP_ERROR"
        return
      fi
      launch pgcopydb "$PGCOPYDB" follow --source "$(src bench)" --target "$(tgt t_pgcopydb)" --dir "$work/pgcopydb-live-$w" \
        --slot-name pgcopydb --origin pgcopydb --resume --not-consistent
      pid=$LAUNCHED
      wait_slot_active pgcopydb 30 || ready=0
      ;;
  esac
  [ "$ready" = 0 ] && log "live $w: $c did not start streaming within the time allowed (going on)"
  [ "$c" != recvlogical ] && start_marker_wait "$db" "$work/marker"
  log "live $w: $c: load ($txns transactions, $rows row changes)"
  load_and_mark "$w"
  [ "$c" = pgcopydb ] && "$PGCOPYDB" stream sentinel set endpos --source "$(src bench)" "$ENDPOS" >/dev/null 2>&1
  local limit=$TIMEOUT
  [ "$c" = pgcopydb ] && limit=$PGCOPYDB_LIVE_TIMEOUT
  if [ "$c" = recvlogical ]; then
    local i
    for ((i = 0; i < limit * 50; i++)); do [ -s "$work/marker" ] && break; kill -0 "$pid" 2>/dev/null || break; nap 0.02; done
  else
    await "$WAITER" "$pid" "$limit"
  fi
  [ -s "$work/marker" ] && lag=$(sub "$(cat "$work/marker")" "$MARK_AT")
  case $c in
    recvlogical) stop_group "$pid" ;;
    native) tq t_native -c "alter subscription bench_sub disable" ;;
    pgferry)
      # endpos only now: a deno process started at the load's end would take CPU from the
      # follow being timed (native needs nothing of the kind to stop)
      ferry stream sentinel set endpos "$ENDPOS" --dir "$work/ferry-live-$w" >/dev/null
      local i
      for ((i = 0; i < 1500; i++)); do kill -0 "$pid" 2>/dev/null || break; nap 0.02; done
      kill -0 "$pid" 2>/dev/null && { err="did not exit within 30 s of endpos"; stop_group "$pid"; }
      rc=$(rc_of "$pid")
      [ "$rc" != 0 ] && err="exit $rc: $(first_error "$work/ferry.log")"
      rss=$(peak_rss ferry)
      cp "$work/ferry.log" "$work/ferry-live-$w.log"
      ;;
    pgcopydb)
      local alive=0
      kill -0 "$pid" 2>/dev/null && alive=1
      stop_group "$pid"
      rc=$(rc_of "$pid")
      if [ -z "$lag" ]; then
        err=$(first_error "$work/pgcopydb.log")
        if [ "$alive" = 1 ]; then err="timed out after ${limit}s; first error: ${err:-none logged}"; else err="exited $rc; first error: $err"; fi
      fi
      cp "$work/pgcopydb.log" "$work/pgcopydb-live-$w.log"
      ;;
  esac
  [ -z "$lag" ] && [ -z "$err" ] && err="the marker never reached the target within ${limit}s"
  if [ -n "$db" ]; then
    checksum sq bench >"$sumfile"
    verdict=$(compare_with_source "$db" "$sumfile")
    applied=$(tq "$db" -c "$(progress_sql "$w")" 2>/dev/null || echo "?")
    [ "$verdict" != ok ] && [ -z "$err" ] && err="$verdict"
  fi
  [ -n "$lag" ] && [ -z "$err" ] && ok=1
  record mode=live round="$ROUND" workload="$w" consumer="$c$([ "$c" = recvlogical ] && echo " (test_decoding)")" ok=$ok lag="$lag" \
    load_seconds="$LOAD_SECONDS" rows="$rows" txns="$txns" verified="$verdict" applied_txns="$applied" peak_rss_kib="$rss" error="$err"
  log "live $w: round $ROUND: $c lag=${lag:-—}s load=${LOAD_SECONDS}s verified=$verdict${rss:+ rss=${rss}KiB}${err:+ error: $err}"
}

# ---------------------------------------------------------------- main

log "config: scale $SCALE, pgbench $PGBENCH_TXNS txns (-c $CLIENTS), bulk $BULK_TXNS × $BULK_ROWS rows, tiny $TINY_TXNS txns; modes: $MODES; workloads: $WORKLOADS; consumers: $CONSUMERS"
if [[ " $CONSUMERS " == *" pgcopydb "* ]] && [ -z "$PGCOPYDB" ]; then
  log "pgcopydb not found: skipping it"
  CONSUMERS=${CONSUMERS//pgcopydb/}
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for w in $WORKLOADS; do
  log "templates for $w (source and target, built independently)"
  make_template "$w" sq &
  make_template "$w" tq
  wait $!
  checksum sq "tpl_$w" >"$work/tpl-src.sum" &
  checksum tq "tpl_$w" >"$work/tpl-tgt.sum"
  wait $!
  if ! cmp -s "$work/tpl-src.sum" "$work/tpl-tgt.sum"; then
    echo "error: the $w template differs between source and target:" >&2
    diff "$work/tpl-src.sum" "$work/tpl-tgt.sum" >&2 || true
    exit 1
  fi
done
for mode in $MODES; do
  for w in $WORKLOADS; do
    if [ "$mode" = backlog ]; then
      backlog "$w"
    else
      read -r -a order <<<"$CONSUMERS"
      for ((ROUND = 1; ROUND <= LIVE_ROUNDS; ROUND++)); do
        for ((i = 0; i < ${#order[@]}; i++)); do
          c=${order[$(((i + ROUND - 1) % ${#order[@]}))]}
          [ "$c" = pgcopydb ] && [ $ROUND -gt 1 ] && continue
          live "$w" "$c"
        done
      done
      ROUND=1
    fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$results_dir"
json=$results_dir/cdc-$stamp.json
"$DENO" run --allow-read --allow-write "$top/bench/cdc_report.ts" "$records" "$json" \
  "date=$stamp" "host=$(hostname)" "cpus=$(nproc)" "loadavg_before=$load_before" "loadavg_after=$load_after" \
  "postgres=$("$PG_BIN/postgres" --version)" "pgcopydb=$([ -n "$PGCOPYDB" ] && "$PGCOPYDB" --version 2>/dev/null | head -1)" \
  "pgferry=$tree_id" \
  "pgferry_plugin=$FERRY_PLUGIN" "scale=$SCALE" "pgbench_txns=$PGBENCH_TXNS" "clients=$CLIENTS" \
  "bulk_txns=$BULK_TXNS" "bulk_rows=$BULK_ROWS" "tiny_txns=$TINY_TXNS" "pgcopydb_timeout=$PGCOPYDB_TIMEOUT" "pgcopydb_live_timeout=$PGCOPYDB_LIVE_TIMEOUT"
echo "JSON: $json"
[ "$keep" = 1 ] && echo "logs: $work"

if [ "$clone" = 1 ] && [ -f "$top/bench/clone.sh" ]; then
  log "running bench/clone.sh"
  pg_stop "$work/source"
  pg_stop "$work/target"
  bash "$top/bench/clone.sh"
fi
