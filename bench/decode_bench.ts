/**
 * Decoders on pgbench's own changes: the UPDATE of pgbench_accounts and the
 * INSERT into pgbench_history of every TPC-B transaction, as each plugin
 * writes them. Run: deno bench -A bench/decode_bench.ts
 */
import type { Relation, RelationColumn } from "../lib/decode/change.ts";
import { PgoutputDecoder } from "../lib/decode/pgoutput.ts";
import { TestDecodingDecoder } from "../lib/decode/test_decoding.ts";
import { Wal2jsonDecoder } from "../lib/decode/wal2json.ts";

const LSN = 0x16_B374D848n;
const FILLER = " ".repeat(84);
const encoder = new TextEncoder();

// --- pgoutput: hand-built protocol messages -------------------------------
function bytes(...parts: (string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) out.push(...(typeof p === "string" ? encoder.encode(p) : p));
  return new Uint8Array(out);
}
const u16 = (n: number) => [n >> 8 & 0xff, n & 0xff];
const u32 = (n: number) => [n >>> 24 & 0xff, n >>> 16 & 0xff, n >>> 8 & 0xff, n & 0xff];
const cstr = (s: string) => [...encoder.encode(s), 0];
const text = (s: string) => [0x74, ...u32(encoder.encode(s).length), ...encoder.encode(s)];
const column = (key: boolean, name: string, oid: number, typmod = -1) => [
  key ? 1 : 0,
  ...cstr(name),
  ...u32(oid),
  ...u32(typmod >>> 0),
];

const pgoutputAccounts = bytes(
  "R",
  u32(16390),
  cstr("public"),
  cstr("pgbench_accounts"),
  "d",
  u16(4),
  column(true, "aid", 23),
  column(false, "bid", 23),
  column(false, "abalance", 23),
  column(false, "filler", 1042, 88),
);
const pgoutputHistory = bytes(
  "R",
  u32(16396),
  cstr("public"),
  cstr("pgbench_history"),
  "f",
  u16(6),
  column(true, "tid", 23),
  column(true, "bid", 23),
  column(true, "aid", 23),
  column(true, "delta", 23),
  column(true, "mtime", 1114),
  column(true, "filler", 1042, 26),
);
const pgoutputUpdate = bytes(
  "U",
  u32(16390),
  "N",
  u16(4),
  text("48213"),
  text("1"),
  text("-2417"),
  text(FILLER),
);
const pgoutputInsert = bytes(
  "I",
  u32(16396),
  "N",
  u16(6),
  text("7"),
  text("1"),
  text("48213"),
  text("-2417"),
  text("2024-05-01 12:34:56.789012"),
  "n",
);
const pgoutput = new PgoutputDecoder();
pgoutput.decode(LSN, pgoutputAccounts);
pgoutput.decode(LSN, pgoutputHistory);

// --- test_decoding ---------------------------------------------------------
const testDecodingUpdate = encoder.encode(
  `table public.pgbench_accounts: UPDATE: aid[integer]:48213 bid[integer]:1 abalance[integer]:-2417 filler[character]:'${FILLER}'`,
);
const testDecodingInsert = encoder.encode(
  "table public.pgbench_history: INSERT: tid[integer]:7 bid[integer]:1 aid[integer]:48213 delta[integer]:-2417 " +
    "mtime[timestamp without time zone]:'2024-05-01 12:34:56.789012' filler[character]:null",
);

// --- wal2json --------------------------------------------------------------
const wal2jsonUpdate = encoder.encode(JSON.stringify({
  action: "U",
  xid: 1234,
  lsn: "16/B374D848",
  schema: "public",
  table: "pgbench_accounts",
  columns: [
    { name: "aid", type: "integer", typeoid: 23, value: 48213 },
    { name: "bid", type: "integer", typeoid: 23, value: 1 },
    { name: "abalance", type: "integer", typeoid: 23, value: -2417 },
    { name: "filler", type: "character(84)", typeoid: 1042, value: FILLER },
  ],
  identity: [{ name: "aid", type: "integer", typeoid: 23, value: 48213 }],
}));
const wal2jsonInsert = encoder.encode(JSON.stringify({
  action: "I",
  xid: 1234,
  lsn: "16/B374D848",
  schema: "public",
  table: "pgbench_history",
  columns: [
    { name: "tid", type: "integer", typeoid: 23, value: 7 },
    { name: "bid", type: "integer", typeoid: 23, value: 1 },
    { name: "aid", type: "integer", typeoid: 23, value: 48213 },
    { name: "delta", type: "integer", typeoid: 23, value: -2417 },
    {
      name: "mtime",
      type: "timestamp without time zone",
      typeoid: 1114,
      value: "2024-05-01 12:34:56.789012",
    },
    { name: "filler", type: "character(22)", typeoid: 1042, value: null },
  ],
}));

// The catalog's view of the two tables, for the text plugins.
const col = (name: string, typeOid: number, typeName: string, key = false): RelationColumn => ({
  name,
  typeOid,
  typeName,
  typeMod: -1,
  key,
  generated: false,
});
const relations: Relation[] = [
  {
    relid: 16390,
    schema: "public",
    table: "pgbench_accounts",
    replicaIdentity: "d",
    columns: [
      col("aid", 23, "integer", true),
      col("bid", 23, "integer"),
      col("abalance", 23, "integer"),
      col("filler", 1042, "character(84)"),
    ],
  },
  {
    relid: 16396,
    schema: "public",
    table: "pgbench_history",
    replicaIdentity: "f",
    columns: [
      col("tid", 23, "integer"),
      col("bid", 23, "integer"),
      col("aid", 23, "integer"),
      col("delta", 23, "integer"),
      col("mtime", 1114, "timestamp without time zone"),
      col("filler", 1042, "character(22)"),
    ],
  },
];
const lookup = (schema: string, table: string) =>
  relations.find((r) => r.schema === schema && r.table === table);
const testDecoding = new TestDecodingDecoder(lookup);
const wal2json = new Wal2jsonDecoder(lookup);

Deno.bench("pgoutput UPDATE pgbench_accounts", { group: "update", baseline: true }, () => {
  pgoutput.decode(LSN, pgoutputUpdate);
});
Deno.bench("test_decoding UPDATE pgbench_accounts", { group: "update" }, () => {
  testDecoding.decode(LSN, testDecodingUpdate);
});
Deno.bench("wal2json UPDATE pgbench_accounts", { group: "update" }, () => {
  wal2json.decode(LSN, wal2jsonUpdate);
});

Deno.bench("pgoutput INSERT pgbench_history", { group: "insert", baseline: true }, () => {
  pgoutput.decode(LSN, pgoutputInsert);
});
Deno.bench("test_decoding INSERT pgbench_history", { group: "insert" }, () => {
  testDecoding.decode(LSN, testDecodingInsert);
});
Deno.bench("wal2json INSERT pgbench_history", { group: "insert" }, () => {
  wal2json.decode(LSN, wal2jsonInsert);
});

// What exact numbers cost wal2json: the same message through plain JSON.parse.
const decoder = new TextDecoder();
Deno.bench(
  "JSON.parse of the wal2json UPDATE, no reviver (lower bound)",
  { group: "update" },
  () => {
    JSON.parse(decoder.decode(wal2jsonUpdate));
  },
);
