import {
  type Column,
  type Relation,
  type RelationColumn,
  UNCHANGED_TOAST,
} from "../lib/decode/change.ts";
import { TEST_DECODING_OPTIONS, TestDecodingDecoder } from "../lib/decode/test_decoding.ts";
import { parseLsn } from "../lib/lsn.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  decodeAll,
  loadRelations,
  slotMessages,
  withDatabaseOf,
} from "./fixtures/decode/scenario.ts";

const LSN = parseLsn("0/16B3748");

function relationColumn(
  name: string,
  typeOid: number,
  typeName: string,
  key = false,
  generated = false,
): RelationColumn {
  return { name, typeOid, typeName, typeMod: -1, key, generated };
}

/** What a catalog would say about the tables of the fixtures below. */
const RELATIONS: Relation[] = [
  {
    relid: 16384,
    schema: "public",
    table: "t",
    replicaIdentity: "d",
    columns: [
      relationColumn("id", 23, "integer", true),
      relationColumn("name", 25, "text"),
      relationColumn("g", 23, "integer", false, true),
    ],
  },
  {
    relid: 16385,
    schema: "public",
    table: "full",
    replicaIdentity: "f",
    columns: [
      relationColumn("a", 23, "integer"),
      relationColumn("b", 25, "text"),
      relationColumn("c", 25, "text"),
    ],
  },
];
const lookup = (schema: string, table: string) =>
  RELATIONS.find((r) => r.schema === schema && r.table === table);

/** A column as a message without lookup describes it. */
const col = (name: string, typeName: string, key = false): Column => ({
  name,
  typeOid: 0,
  typeName,
  key,
});

function decodeOne(text: string, decoder = new TestDecodingDecoder()) {
  const changes = decoder.decode(LSN, text);
  assertEquals(changes.length, 1, text);
  return changes[0]!;
}

Deno.test("test_decoding BEGIN and COMMIT carry xid, end LSN and commit time", () => {
  assertEquals(decodeOne("BEGIN 4294967295"), { tag: "Begin", lsn: LSN, xid: 4294967295 });
  assertEquals(decodeOne("COMMIT 1234 (at 2000-01-01 00:00:01.5+00)"), {
    tag: "Commit",
    lsn: LSN,
    endLsn: LSN,
    commitTime: 1_500_000n,
  });
  // The walsender's TimeZone shows in the offset.
  assertEquals(decodeOne("COMMIT 1234 (at 2000-01-01 05:30:00+05:30)"), {
    tag: "Commit",
    lsn: LSN,
    endLsn: LSN,
    commitTime: 0n,
  });
});

Deno.test("test_decoding BEGIN without xid and COMMIT without time name the missing option", () => {
  assertThrows(() => decodeOne("BEGIN"), SyntaxError, "include-xids");
  assertThrows(() => decodeOne("COMMIT 1234"), SyntaxError, "include-timestamp");
});

Deno.test("test_decoding INSERT reads every value form: null, quoted, numbers, booleans, bit strings", () => {
  const change = decodeOne(
    "table public.t: INSERT: id[integer]:1 name[text]:'it''s' n[text]:null q[text]:'null' e[text]:'' " +
      "x[text]:'''' f[double precision]:-1.5e+300 nan[numeric]:NaN inf[double precision]:-Infinity " +
      "b[boolean]:true c[boolean]:false bits[bit]:B'101' arr[integer[]]:'{1,NULL,3}' " +
      "bs[text]:'a\\b\nc' ts[timestamp with time zone]:'2024-01-02 01:04:05.123456+00'",
  );
  assert(change.tag === "Insert");
  assertEquals(change.relation, { schema: "public", table: "t" });
  assertEquals(change.new.columns.map((c) => `${c.name}[${c.typeName}]`), [
    "id[integer]",
    "name[text]",
    "n[text]",
    "q[text]",
    "e[text]",
    "x[text]",
    "f[double precision]",
    "nan[numeric]",
    "inf[double precision]",
    "b[boolean]",
    "c[boolean]",
    "bits[bit]",
    "arr[integer[]]",
    "bs[text]",
    "ts[timestamp with time zone]",
  ]);
  assertEquals(change.new.values, [
    "1",
    "it's",
    null,
    "null",
    "",
    "'",
    "-1.5e+300",
    "NaN",
    "-Infinity",
    "t",
    "f",
    "101",
    "{1,NULL,3}",
    "a\\b\nc",
    "2024-01-02 01:04:05.123456+00",
  ]);
});

Deno.test("test_decoding reads quoted table and column names and types with spaces, brackets and quotes", () => {
  const change = decodeOne(
    'table "my schema"."My ""Table""": INSERT: "my col"[text]:\'x\' "we""ird"[character varying(10)]:\'y\' ' +
      "a_1[timestamp with time zone[]]:'{}' t[\"my schema\".\"odd]:type\"[]]:'{}' \"new-tuple:\"[text]:'z'",
  );
  assert(change.tag === "Insert");
  assertEquals(change.relation, { schema: "my schema", table: 'My "Table"' });
  assertEquals(change.new.columns, [
    col("my col", "text"),
    col('we"ird', "character varying(10)"),
    col("a_1", "timestamp with time zone[]"),
    col("t", '"my schema"."odd]:type"[]'),
    col("new-tuple:", "text"),
  ]);
  assertEquals(change.new.values, ["x", "y", "{}", "{}", "z"]);
});

Deno.test("test_decoding UPDATE without old key takes key flags from the lookup and drops generated columns", () => {
  const decoder = new TestDecodingDecoder(lookup);
  const change = decodeOne(
    "table public.t: UPDATE: id[integer]:1 name[text]:unchanged-toast-datum g[integer]:2",
    decoder,
  );
  assertEquals(change, {
    tag: "Update",
    lsn: LSN,
    relation: { schema: "public", table: "t" },
    old: null,
    new: {
      columns: [
        { name: "id", typeOid: 23, typeName: "integer", key: true },
        { name: "name", typeOid: 25, typeName: "text", key: false },
      ],
      values: ["1", UNCHANGED_TOAST],
    },
  });
});

Deno.test("test_decoding UPDATE with old-key: the old key, which may hold ' new-tuple: ' in a value", () => {
  const change = decodeOne(
    "table public.u: UPDATE: old-key: k[text]:'a new-tuple: b' new-tuple: k[text]:'c' v[integer]:1",
  );
  assertEquals(change, {
    tag: "Update",
    lsn: LSN,
    relation: { schema: "public", table: "u" },
    old: { kind: "key", columns: [col("k", "text", true)], values: ["a new-tuple: b"] },
    new: { columns: [col("k", "text"), col("v", "integer")], values: ["c", "1"] },
  });
});

Deno.test("test_decoding UPDATE drops an old key that repeats the new key", () => {
  const change = decodeOne(
    "table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:1 name[text]:'x'",
  );
  assert(change.tag === "Update");
  assertEquals(change.old, null);
});

Deno.test("test_decoding REPLICA IDENTITY FULL: old rows get back the NULL columns test_decoding skips", () => {
  const decoder = new TestDecodingDecoder(lookup);
  const columns: Column[] = [
    { name: "a", typeOid: 23, typeName: "integer", key: true },
    { name: "b", typeOid: 25, typeName: "text", key: true },
    { name: "c", typeOid: 25, typeName: "text", key: true },
  ];
  const full = { schema: "public", table: "full" };
  assertEquals(
    decodeOne(
      "table public.full: UPDATE: old-key: a[integer]:1 c[text]:'x' new-tuple: a[integer]:1 b[text]:null c[text]:'y'",
      decoder,
    ),
    {
      tag: "Update",
      lsn: LSN,
      relation: full,
      old: { kind: "row", columns, values: ["1", null, "x"] },
      new: { columns, values: ["1", null, "y"] },
    },
  );
  assertEquals(decodeOne("table public.full: DELETE: a[integer]:2", decoder), {
    tag: "Delete",
    lsn: LSN,
    relation: full,
    old: { kind: "row", columns, values: ["2", null, null] },
  });
  // Every column NULL: nothing between "old-key:" and "new-tuple:".
  const change = decodeOne(
    "table public.full: UPDATE: old-key: new-tuple: a[integer]:3 b[text]:null c[text]:null",
    decoder,
  );
  assert(change.tag === "Update");
  assertEquals(change.old, { kind: "row", columns, values: [null, null, null] });
});

Deno.test("test_decoding DELETE: old key, or no tuple data under REPLICA IDENTITY NOTHING", () => {
  assertEquals(decodeOne("table public.t: DELETE: id[integer]:3"), {
    tag: "Delete",
    lsn: LSN,
    relation: { schema: "public", table: "t" },
    old: { kind: "key", columns: [col("id", "integer", true)], values: ["3"] },
  });
  assertEquals(decodeOne("table public.n: DELETE: (no-tuple-data)"), {
    tag: "Delete",
    lsn: LSN,
    relation: { schema: "public", table: "n" },
    old: null,
  });
});

Deno.test("test_decoding TRUNCATE reads its tables and flags", () => {
  const cases: [string, boolean, boolean][] = [
    ["(no-flags)", false, false],
    ["restart_seqs", false, true],
    ["cascade", true, false],
    ["restart_seqs cascade", true, true],
  ];
  for (const [flags, cascade, restartIdentity] of cases) {
    assertEquals(decodeOne(`table public.a, "S"."b c": TRUNCATE: ${flags}`), {
      tag: "Truncate",
      lsn: LSN,
      relations: [{ schema: "public", table: "a" }, { schema: "S", table: "b c" }],
      cascade,
      restartIdentity,
    });
  }
  assertThrows(
    () => decodeOne("table public.a: TRUNCATE: restart_identity"),
    SyntaxError,
    "TRUNCATE flags",
  );
});

Deno.test("test_decoding logical messages produce no change; bytes are read as UTF-8", () => {
  const decoder = new TestDecodingDecoder();
  assertEquals(decoder.decode(LSN, "message: transactional: 1 prefix: p, sz: 2 content:hi"), []);
  const [change] = decoder.decode(
    LSN,
    new TextEncoder().encode("table public.t: INSERT: v[text]:'é😀'"),
  );
  assert(change?.tag === "Insert");
  assertEquals(change.new.values, ["é😀"]);
});

Deno.test("test_decoding decoder rejects what it cannot read with a SyntaxError", () => {
  assertThrows(
    () => decodeOne("PREPARE TRANSACTION 'x', txid 5"),
    SyntaxError,
    "unsupported message",
  );
  assertThrows(
    () => decodeOne("table public.t: INSERT: v[text]:'abc"),
    SyntaxError,
    "unterminated quoted value",
  );
  assertThrows(
    () => decodeOne("table public.t: INSERT: v[text:'abc'"),
    SyntaxError,
    "unterminated column type",
  );
  assertThrows(
    () => decodeOne("table public.t: MERGE: v[text]:'a'"),
    SyntaxError,
    "unknown action",
  );
  assertThrows(
    () => decodeOne('table "public.t: INSERT:'),
    SyntaxError,
    "unterminated quoted identifier",
  );
  assertThrows(() => decodeOne("table public.t: INSERT: v[text]:"), SyntaxError, "missing value");
});

Deno.test("test_decoding from a real slot: values arrive as the server prints them", async () => {
  await withDatabaseOf(async (sql, database) => {
    await sql`create schema "S p"`;
    await sql`create table "S p"."T ""q""" ("i d" bigint primary key, n numeric, f float8, t text, b bool, v varchar(10), a text[], g int generated always as (1) stored)`;
    const slot = `${database}_test_decoding`;
    await sql`select pg_create_logical_replication_slot(${slot}, 'test_decoding')`;
    await sql`insert into "S p"."T ""q""" values (-9223372036854775808, 123456789012345678901234567890.123456789, 1e308, E'x''y\\z\n', false, 'a b', '{"x y",NULL}')`;
    await sql`update "S p"."T ""q""" set "i d" = 1`;
    const relations = await loadRelations(sql, ["S p"]);
    const changes = decodeAll(
      "test_decoding",
      await slotMessages(sql, slot, "test_decoding"),
      relations,
    );
    assertEquals(changes.map((c) => c.tag), [
      "Begin",
      "Insert",
      "Commit",
      "Begin",
      "Update",
      "Commit",
    ]);
    const [insert, update] = [changes[1]!, changes[4]!];
    assert(insert.tag === "Insert" && update.tag === "Update");
    assertEquals(insert.relation, { schema: "S p", table: 'T "q"' });
    assertEquals(insert.new.columns.map((c) => [c.name, c.typeOid, c.key]), [
      ["i d", 20, true],
      ["n", 1700, false],
      ["f", 701, false],
      ["t", 25, false],
      ["b", 16, false],
      ["v", 1043, false],
      ["a", 1009, false],
    ]);
    const [row] =
      await sql`select '-9223372036854775808', n::text, f::text, t, 'f', v, a::text from "S p"."T ""q"""`
        .values();
    assertEquals(insert.new.values, row);
    assertEquals(update.old, {
      kind: "key",
      columns: [insert.new.columns[0]!],
      values: ["-9223372036854775808"],
    });
    assertEquals(TEST_DECODING_OPTIONS.map(([name]) => name), [
      "include-xids",
      "include-timestamp",
      "skip-empty-xacts",
    ]);
  });
});
