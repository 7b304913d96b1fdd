#!/usr/bin/env bash
# The inject side of the follow scenario (compose.yaml), as a plain script: it
# takes everything from the environment, so it runs the same against local
# clusters. It never opens pgferry's catalog: the sentinel goes over TCP.
#
#   inject.sh prepare   create the demo tables on the source and load rows (before the clone)
#   inject.sh run       wait for the coordinator, write on the source, set endpos over TCP,
#                       wait until the target has replayed up to it, compare source and target
#
# Environment:
#   PGFERRY_SOURCE_PGURI   the source database
#   PGFERRY_TARGET_PGURI   the target database (run: the final comparison)
#   PGFERRY_HOST           where the coordinator of the follow process listens
#   PGFERRY_PORT           its port (default 5442)
#   PGFERRY_SECRET         the coordinator's shared secret, or
#   PGFERRY_SECRET_FILE    a file that holds it
#   PGFERRY_BIN            how to run pgferry (default "pgferry"; e.g. "deno run -A main.ts")
#   INJECT_ROUNDS          rounds of changes (default 5)
#   INJECT_TIMEOUT         seconds to wait for the target to reach endpos (default 600)
set -euo pipefail

step=${1:-run}
source_uri=${PGFERRY_SOURCE_PGURI:?set PGFERRY_SOURCE_PGURI}
read -r -a pgferry <<<"${PGFERRY_BIN:-pgferry}"

sql() { PGTZ=UTC psql --no-psqlrc --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 "$@"; }

if [ "$step" = prepare ]; then
  sql "$source_uri" <<'SQL'
create table if not exists inject_items (
  id bigint generated always as identity primary key,
  name text not null,
  price numeric(20, 6),
  tags text[],
  doc jsonb,
  note text,
  updated_at timestamptz not null default now()
);
create table if not exists inject_events (
  at timestamptz not null,
  kind text,
  payload bytea
);
alter table inject_events replica identity full;
insert into inject_items (name, price, tags, doc, note)
select 'item ' || i, i / 7.0, array['a', 'b''c'], jsonb_build_object('i', i), null
from generate_series(1, 1000) as i;
SQL
  echo "prepared: inject_items, inject_events"
  exit 0
fi
[ "$step" = run ] || { echo "usage: inject.sh [prepare|run]" >&2; exit 2; }

target_uri=${PGFERRY_TARGET_PGURI:?set PGFERRY_TARGET_PGURI}
tcp=(--host "${PGFERRY_HOST:?set PGFERRY_HOST}" --port "${PGFERRY_PORT:-5442}")
if [ -n "${PGFERRY_SECRET_FILE:-}" ]; then tcp+=(--secret-file "$PGFERRY_SECRET_FILE"); fi

"${pgferry[@]}" stream sentinel ping --wait 300 "${tcp[@]}"

for round in $(seq "${INJECT_ROUNDS:-5}"); do
  sql "$source_uri" <<SQL
begin;
insert into inject_items (name, price, tags, doc, note)
select 'round $round item ' || i, i * 1.25, array[]::text[], '{"quote": "a\"b"}', E'line\nbreak \\\\ and ''quote'''
from generate_series(1, 200) as i;
update inject_items set price = price * 2, updated_at = now() where id % 10 = $round;
delete from inject_items where id % 97 = $round;
insert into inject_events values (now(), 'round', '\\xdeadbeef'), (now(), null, null);
commit;
update inject_items set note = 'null' where id = $round;
delete from inject_events where kind is null;
SQL
  if [ $((round % 2)) = 0 ]; then sql "$source_uri" -c 'select pg_switch_wal()' >/dev/null; fi
  sleep 1
done

endpos=$("${pgferry[@]}" stream sentinel set endpos --current --source "$source_uri" "${tcp[@]}")
echo "endpos set to $endpos over TCP"

# Wait until replay_lsn reaches endpos; the follow process exits then, and its
# coordinator with it, so an unreachable coordinator also ends the wait.
deadline=$((SECONDS + ${INJECT_TIMEOUT:-600}))
while replay=$("${pgferry[@]}" stream sentinel get --replay-lsn "${tcp[@]}" 2>/dev/null); do
  [ "$(sql "$source_uri" -c "select '$replay'::pg_lsn >= '$endpos'::pg_lsn")" = t ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "error: replay_lsn is $replay, still short of endpos $endpos" >&2
    exit 1
  fi
  sleep 1
done

compare="select (select count(*) || ' ' || md5(string_agg(t::text, ',' order by id))
                 from inject_items t) || ' / ' ||
                (select count(*) || ' ' || md5(string_agg(t::text, ',' order by t::text))
                 from inject_events t)"
on_source=$(sql "$source_uri" -c "$compare")
on_target=$(sql "$target_uri" -c "$compare")
echo "source: $on_source"
echo "target: $on_target"
if [ "$on_source" != "$on_target" ]; then
  echo "error: the target differs from the source at endpos $endpos" >&2
  exit 1
fi
echo "target equals source at endpos $endpos"
