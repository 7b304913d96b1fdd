/**
 * The apply stage on a spool written here, against the real target cluster: what it does with
 * the records a live stream brings (keepalives between transactions).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { freshDatabase, targetUri, tempDir } from "./helpers/env.ts";
import { psql } from "./helpers/pg.ts";
import { withSql } from "./helpers/tables.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { readSentinel, setupSentinel, updateSentinel } from "../lib/catalog/sentinel_store.ts";
import type { Change, Column } from "../lib/decode/change.ts";
import { runApply } from "../lib/follow/apply.ts";
import { StageCounters } from "../lib/follow/metrics.ts";
import { SpoolWriter } from "../lib/spool/writer.ts";
import { formatLsn } from "../lib/lsn.ts";

const columns: Column[] = [
  { name: "id", typeOid: 23, typeName: "integer", key: true },
  { name: "v", typeOid: 25, typeName: "text", key: false },
];

/** Source transaction `n`: one insert, ending at (n + 1) * 0x1000. */
function txn(n: number): Change[] {
  const base = BigInt(n) * 0x1000n;
  return [
    { tag: "Begin", lsn: base + 0x10n, xid: 700 + n },
    {
      tag: "Insert",
      lsn: base + 0x20n,
      relation: { schema: "public", table: "t" },
      new: { columns, values: [String(n), `row ${n}`] },
    },
    { tag: "Commit", lsn: base + 0x1000n, endLsn: base + 0x1000n, commitTime: 1234n + BigInt(n) },
  ];
}

Deno.test("keepalives between source transactions do not split apply's target transactions", async () => {
  const name = "apply_keepalives";
  const target = await freshDatabase(targetUri(), name);
  await psql(target, "create table t (id integer primary key, v text)");
  await psql(
    targetUri(),
    `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${name}';
     select pg_replication_origin_create('${name}')`,
  );
  const dir = await tempDir(name);
  // What a live stream spools: after each transaction, a keepalive a little further on.
  const n = 300;
  const writer = SpoolWriter.open(dir);
  for (let i = 0; i < n; i++) {
    for (const change of txn(i)) writer.append(change);
    writer.keepalive(BigInt(i + 1) * 0x1000n + 8n);
  }
  writer.close();
  const endpos = BigInt(n) * 0x1000n + 8n;
  using catalog = await Catalog.open(dir, { create: true });
  await setupSentinel(catalog, 0n, endpos);
  await updateSentinel(catalog, { apply: true });

  const counters = new StageCounters();
  assertEquals(await runApply({ dir, catalog, target, origin: name, counters }), "endpos");

  const delta = counters.drain()!;
  const total = (metric: string) =>
    delta.counters.filter(([m]) => m === metric).reduce((sum, [, , v]) => sum + v, 0);
  assertEquals(total("pgferry_transactions_applied_total"), n);
  // One round trip per keepalive (a commit, waited for) before; a few groups now.
  const roundTrips = total("pgferry_apply_round_trips_total");
  assert(roundTrips <= 10, `${roundTrips} round trips for ${n} transactions`);
  await withSql(target, async (sql) => {
    const [row] = await sql`select count(*)::int as rows, sum(id)::int as ids,
      bool_and(v = 'row ' || id) as values from t`;
    assertEquals([row!["rows"], row!["ids"], row!["values"]], [n, (n * (n - 1)) / 2, true]);
    const [origin] = await sql`select pg_replication_origin_progress(${name}, true)::text as lsn`;
    assertEquals(origin!["lsn"], formatLsn(BigInt(n) * 0x1000n));
  });
  // The last keepalive is reached: replay_lsn says so.
  assertEquals(formatLsn(readSentinel(catalog.db).replayLsn), formatLsn(endpos));
  await psql(targetUri(), `select pg_replication_origin_drop('${name}')`);
});
