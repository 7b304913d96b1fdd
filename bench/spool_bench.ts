/**
 * The spool's hot path, per row change: a record written by receive, read back
 * by apply, and merged into the statements of a group. The all-JSON encoding
 * that older spools used is measured beside the row format for reference.
 *
 *   deno bench -A bench/spool_bench.ts
 */
import { type Change, type Column, decodeChange, encodeChange } from "../lib/decode/change.ts";
import { decodeRecord, encodeRecord, RecordKind } from "../lib/spool/record.ts";
import { NetChanges } from "../lib/follow/net_changes.ts";
import type { TargetTable } from "../lib/follow/sql.ts";

const columns: Column[] = [
  { name: "aid", typeOid: 23, typeName: "integer", key: true },
  { name: "bid", typeOid: 23, typeName: "integer", key: false },
  { name: "abalance", typeOid: 23, typeName: "integer", key: false },
  { name: "filler", typeOid: 1042, typeName: "character(84)", key: false },
];
const update = (aid: number): Change => ({
  tag: "Update",
  lsn: 123_456_789n,
  relation: { schema: "public", table: "pgbench_accounts" },
  old: null,
  new: { columns, values: [String(aid), "1", "-4321", " ".repeat(84)] },
});
const change = update(17);
const record = encodeRecord(RecordKind.Change, change.lsn, change);
const json = JSON.stringify({ ...change, lsn: String(change.lsn) });

Deno.bench("encodeChange of a pgbench_accounts UPDATE", { group: "encode", baseline: true }, () => {
  encodeChange(change);
});
Deno.bench("JSON.stringify of the same change (older spools)", { group: "encode" }, () => {
  JSON.stringify({ ...change, lsn: String(change.lsn) });
});
Deno.bench("decode a pgbench_accounts UPDATE record", { group: "decode", baseline: true }, () => {
  decodeRecord(record, 0, record.length);
});
Deno.bench("decodeChange of the same change as JSON (older spools)", { group: "decode" }, () => {
  decodeChange(json);
});
Deno.bench("encode the whole record (TextEncoder.encode, CRC)", () => {
  encodeRecord(RecordKind.Change, change.lsn, change);
});

const target: TargetTable = {
  schema: "public",
  table: "pgbench_accounts",
  partitioned: false,
  alwaysIdentity: new Set(),
  keyColumns: ["aid"],
  generated: new Set(),
  reorderable: true,
  columnTypes: new Map([
    ["aid", "pg_catalog.int4"],
    ["bid", "pg_catalog.int4"],
    ["abalance", "pg_catalog.int4"],
    ["filler", "pg_catalog.bpchar"],
  ]),
};
const updates = Array.from({ length: 1000 }, (_, i) => update(i % 700));
Deno.bench("merge 1,000 UPDATEs of 700 rows and write their statements", () => {
  const net = new NetChanges({ rows: Infinity, bytes: Infinity });
  for (const u of updates) net.add(u as Extract<Change, { tag: "Update" }>, target);
  for (const _ of net.take()) { /* the SQL text */ }
});
