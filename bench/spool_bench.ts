/**
 * The spool's hot path, per row change: a record written by receive, read back
 * by apply, and merged into the statements of a group. The all-JSON encoding
 * that older spools used is measured beside the row format for reference.
 *
 *   deno bench -A bench/spool_bench.ts
 */
import { type Change, type Column, decodeChange, encodeChange } from "../lib/decode/change.ts";
import {
  decodeRecord,
  encodeRecord,
  encodeShapedRecordInto,
  RecordKind,
} from "../lib/spool/record.ts";
import { encodeShape, Shapes } from "../lib/spool/shaped_row.ts";
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
const change = update(17) as Extract<Change, { tag: "Update" }>;
const shapes = new Shapes();
shapes.add(encodeShape(0, { relation: change.relation, columns }));
const buffer = new Uint8Array(1024);
const record = buffer.subarray(0, encodeShapedRecordInto(buffer, 0, change, 0, -1));
const json = JSON.stringify({ ...change, lsn: String(change.lsn) });

Deno.bench("shaped record of a pgbench_accounts UPDATE, CRC included", {
  group: "encode",
  baseline: true,
}, () => {
  encodeShapedRecordInto(buffer, 0, change, 0, -1);
});
Deno.bench(
  "encodeChange of the same change (self-contained row format)",
  { group: "encode" },
  () => {
    encodeChange(change);
  },
);
Deno.bench("JSON.stringify of the same change (older spools)", { group: "encode" }, () => {
  JSON.stringify({ ...change, lsn: String(change.lsn) });
});
Deno.bench("decode a pgbench_accounts UPDATE record", { group: "decode", baseline: true }, () => {
  decodeRecord(record, 0, record.length, shapes);
});
Deno.bench("decodeChange of the same change as JSON (older spools)", { group: "decode" }, () => {
  decodeChange(json);
});
Deno.bench("encode the whole self-contained record (TextEncoder.encode, CRC)", () => {
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
  arrayColumns: new Set(),
};
const updates = Array.from({ length: 1000 }, (_, i) => update(i % 700));
Deno.bench("merge 1,000 UPDATEs of 700 rows and write their statements", () => {
  const net = new NetChanges({ rows: Infinity, bytes: Infinity });
  for (const u of updates) net.add(u as Extract<Change, { tag: "Update" }>, target);
  for (const _ of net.take()) { /* the SQL text */ }
});
