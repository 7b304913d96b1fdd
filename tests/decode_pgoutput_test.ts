import { BUILTIN_TYPE_NAMES } from "../lib/decode/builtin_types.ts";
import { type Change, type Column, UNCHANGED_TOAST } from "../lib/decode/change.ts";
import { PgoutputDecoder, pgoutputOptions } from "../lib/decode/pgoutput.ts";
import { parseLsn } from "../lib/lsn.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { decodeAll, slotMessages, withDatabaseOf } from "./fixtures/decode/scenario.ts";

// Byte builders for hand-written messages: big-endian, strings NUL-terminated.
type Part = string | number[] | Uint8Array;
const u8 = (n: number) => [n];
const u16 = (n: number) => [n >> 8 & 0xff, n & 0xff];
const u32 = (n: number) => [n >>> 24 & 0xff, n >>> 16 & 0xff, n >>> 8 & 0xff, n & 0xff];
const u64 = (n: bigint) => [...u32(Number(n >> 32n)), ...u32(Number(n & 0xffff_ffffn))];
const cstr = (s: string) => [...new TextEncoder().encode(s), 0];
const text = (s: string) => {
  const b = new TextEncoder().encode(s);
  return [0x74, ...u32(b.length), ...b]; // 't'
};
function bytes(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  for (const p of parts) out.push(...(typeof p === "string" ? new TextEncoder().encode(p) : p));
  return new Uint8Array(out);
}

const LSN = parseLsn("0/16B3748");
const INT4 = 23, TEXT = 25;

/** Relation 16384 "public"."t" (id int4 key, name text, note text), replica identity default. */
const RELATION_T = bytes(
  "R",
  u32(16384),
  cstr("public"),
  cstr("t"),
  "d",
  u16(3),
  u8(1),
  cstr("id"),
  u32(INT4),
  u32(0xffff_ffff),
  u8(0),
  cstr("name"),
  u32(TEXT),
  u32(0xffff_ffff),
  u8(0),
  cstr("note"),
  u32(TEXT),
  u32(0xffff_ffff),
);
const ID: Column = { name: "id", typeOid: INT4, typeName: "integer", key: true };
const NAME: Column = { name: "name", typeOid: TEXT, typeName: "text", key: false };
const NOTE: Column = { name: "note", typeOid: TEXT, typeName: "text", key: false };
const T = { schema: "public", table: "t" };

function decoderWithT(): PgoutputDecoder {
  const decoder = new PgoutputDecoder();
  assertEquals(decoder.decode(LSN, RELATION_T), []);
  return decoder;
}

Deno.test("pgoutput Begin carries xid, commit LSN and time", () => {
  const message = bytes(
    "B",
    u64(0x1_0000_0010n),
    u64(-5n & 0xffff_ffff_ffff_ffffn),
    u32(0xffff_fffe),
  );
  assertEquals(new PgoutputDecoder().decode(LSN, message), [
    { tag: "Begin", lsn: LSN, xid: 4294967294, finalLsn: parseLsn("1/10"), commitTime: -5n },
  ]);
});

Deno.test("pgoutput Commit carries commit LSN, end LSN and time", () => {
  const message = bytes("C", u8(0), u64(0x16B3748n), u64(0x16B3778n), u64(757_382_400_123_456n));
  assertEquals(new PgoutputDecoder().decode(parseLsn("0/16B3778"), message), [
    {
      tag: "Commit",
      lsn: parseLsn("0/16B3778"),
      commitLsn: parseLsn("0/16B3748"),
      endLsn: parseLsn("0/16B3778"),
      commitTime: 757_382_400_123_456n,
    },
  ]);
});

Deno.test("pgoutput Insert decodes text, NULL, empty and multibyte values with the Relation's columns", () => {
  const decoder = decoderWithT();
  const insert = bytes("I", u32(16384), "N", u16(3), text("1"), text("é😀 'x'\n"), "n");
  const [change] = decoder.decode(LSN, insert);
  assertEquals(change, {
    tag: "Insert",
    lsn: LSN,
    relation: T,
    new: { columns: [ID, NAME, NOTE], values: ["1", "é😀 'x'\n", null] },
  });
  const [again] = decoder.decode(
    LSN,
    bytes("I", u32(16384), "N", u16(3), text("2"), text(""), text("null")),
  );
  assert(again?.tag === "Insert" && change?.tag === "Insert");
  assert(again.new.columns === change.new.columns, "columns are shared between changes of a table");
  assertEquals(again.new.values, ["2", "", "null"]);
});

Deno.test("pgoutput Update without old tuple keeps unchanged TOAST as a marker", () => {
  const decoder = decoderWithT();
  const update = bytes("U", u32(16384), "N", u16(3), text("1"), "u", text("x"));
  assertEquals(decoder.decode(LSN, update), [
    {
      tag: "Update",
      lsn: LSN,
      relation: T,
      old: null,
      new: { columns: [ID, NAME, NOTE], values: ["1", UNCHANGED_TOAST, "x"] },
    },
  ]);
});

Deno.test("pgoutput Update with a K tuple keeps only the key columns of the old key", () => {
  const decoder = decoderWithT();
  const update = bytes(
    "U",
    u32(16384),
    "K",
    u16(3),
    text("1"),
    "n",
    "n",
    "N",
    u16(3),
    text("2"),
    text("a"),
    "n",
  );
  assertEquals(decoder.decode(LSN, update), [
    {
      tag: "Update",
      lsn: LSN,
      relation: T,
      old: { kind: "key", columns: [ID], values: ["1"] },
      new: { columns: [ID, NAME, NOTE], values: ["2", "a", null] },
    },
  ]);
});

Deno.test("pgoutput Update drops a K tuple that repeats the new key", () => {
  const decoder = decoderWithT();
  const update = bytes(
    "U",
    u32(16384),
    "K",
    u16(3),
    text("1"),
    "n",
    "n",
    "N",
    u16(3),
    text("1"),
    text("a"),
    "u",
  );
  const [change] = decoder.decode(LSN, update);
  assert(change?.tag === "Update");
  assertEquals(change.old, null);
});

Deno.test("pgoutput Update and Delete with an O tuple carry the whole old row", () => {
  const decoder = new PgoutputDecoder();
  const relation = bytes(
    "R",
    u32(16385),
    cstr(""),
    cstr("full"),
    "f",
    u16(2),
    u8(1),
    cstr("a"),
    u32(INT4),
    u32(0xffff_ffff),
    u8(1),
    cstr("b"),
    u32(TEXT),
    u32(0xffff_ffff),
  );
  decoder.decode(LSN, relation);
  const columns: Column[] = [
    { name: "a", typeOid: INT4, typeName: "integer", key: true },
    { name: "b", typeOid: TEXT, typeName: "text", key: true },
  ];
  const full = { schema: "pg_catalog", table: "full" };
  assertEquals(decoder.relation(16385)?.replicaIdentity, "f");
  const update = bytes(
    "U",
    u32(16385),
    "O",
    u16(2),
    text("1"),
    "n",
    "N",
    u16(2),
    text("1"),
    text("b"),
  );
  assertEquals(decoder.decode(LSN, update), [
    {
      tag: "Update",
      lsn: LSN,
      relation: full,
      old: { kind: "row", columns, values: ["1", null] },
      new: { columns, values: ["1", "b"] },
    },
  ]);
  const del = bytes("D", u32(16385), "O", u16(2), text("1"), "n");
  assertEquals(decoder.decode(LSN, del), [
    { tag: "Delete", lsn: LSN, relation: full, old: { kind: "row", columns, values: ["1", null] } },
  ]);
});

Deno.test("pgoutput Delete with a K tuple identifies the row by its key", () => {
  const decoder = decoderWithT();
  const del = bytes("D", u32(16384), "K", u16(3), text("7"), "n", "n");
  assertEquals(decoder.decode(LSN, del), [
    { tag: "Delete", lsn: LSN, relation: T, old: { kind: "key", columns: [ID], values: ["7"] } },
  ]);
});

Deno.test("pgoutput Truncate reads cascade and restart identity from the option bits", () => {
  const decoder = decoderWithT();
  decoder.decode(LSN, bytes("R", u32(16390), cstr("s"), cstr("u"), "d", u16(0)));
  const cases: [number, boolean, boolean][] = [[0, false, false], [1, true, false], [
    2,
    false,
    true,
  ], [3, true, true]];
  for (const [options, cascade, restartIdentity] of cases) {
    const message = bytes("T", u32(2), u8(options), u32(16384), u32(16390));
    assertEquals(decoder.decode(LSN, message), [
      {
        tag: "Truncate",
        lsn: LSN,
        relations: [T, { schema: "s", table: "u" }],
        cascade,
        restartIdentity,
      },
    ]);
  }
});

Deno.test("pgoutput Type messages name user types; built-in types are named without one", () => {
  const decoder = new PgoutputDecoder();
  assertEquals(decoder.decode(LSN, bytes("Y", u32(16400), cstr("my schema"), cstr("Mood"))), []);
  decoder.decode(
    LSN,
    bytes(
      "R",
      u32(16401),
      cstr("public"),
      cstr("m"),
      "n",
      u16(3),
      u8(0),
      cstr("mood"),
      u32(16400),
      u32(0xffff_ffff),
      u8(0),
      cstr("v"),
      u32(1043),
      u32(14),
      u8(0),
      cstr("x"),
      u32(9999),
      u32(0xffff_ffff),
    ),
  );
  assertEquals(decoder.relation(16401)?.columns, [
    {
      name: "mood",
      typeOid: 16400,
      typeName: '"my schema"."Mood"',
      key: false,
      typeMod: -1,
      generated: false,
    },
    {
      name: "v",
      typeOid: 1043,
      typeName: "character varying",
      key: false,
      typeMod: 14,
      generated: false,
    },
    { name: "x", typeOid: 9999, typeName: null, key: false, typeMod: -1, generated: false },
  ]);
});

Deno.test("pgoutput Origin and logical Message produce no change", () => {
  const decoder = new PgoutputDecoder();
  assertEquals(decoder.decode(0n, bytes("O", u64(0x10n), cstr("upstream"))), []);
  assertEquals(decoder.decode(LSN, bytes("M", u8(1), u64(0x10n), cstr("p"), u32(2), "hi")), []);
});

Deno.test("pgoutput Relation message replaces the cached shape of its table", () => {
  const decoder = decoderWithT();
  decoder.decode(
    LSN,
    bytes(
      "R",
      u32(16384),
      cstr("public"),
      cstr("t"),
      "d",
      u16(1),
      u8(1),
      cstr("id"),
      u32(20),
      u32(0xffff_ffff),
    ),
  );
  const [change] = decoder.decode(LSN, bytes("I", u32(16384), "N", u16(1), text("9")));
  assert(change?.tag === "Insert");
  assertEquals(change.new.columns, [{ name: "id", typeOid: 20, typeName: "bigint", key: true }]);
});

Deno.test("pgoutput decoder rejects malformed messages with a SyntaxError", () => {
  const decoder = decoderWithT();
  assertThrows(
    () => decoder.decode(LSN, bytes("S", u32(1))),
    SyntaxError,
    'unsupported message type "S"',
  );
  assertThrows(
    () => decoder.decode(LSN, bytes("B", u32(1))),
    SyntaxError,
    '"B" message truncated at 5 bytes',
  );
  assertThrows(
    () => decoder.decode(LSN, bytes("I", u32(99), "N", u16(0))),
    SyntaxError,
    "relation 99",
  );
  assertThrows(
    () => decoder.decode(LSN, bytes("I", u32(16384), "N", u16(2), text("1"), "n")),
    SyntaxError,
    "has 2 columns, its Relation 3",
  );
  assertThrows(
    () => decoder.decode(LSN, bytes("I", u32(16384), "N", u16(3), "b", u32(1), [1], "n", "n")),
    SyntaxError,
    'unsupported tuple value kind "b"',
  );
  assertThrows(
    () =>
      decoder.decode(
        LSN,
        bytes("I", u32(16384), "N", u16(3), [0x74, ...u32(2), 0xc3, 0x28], "n", "n"),
      ),
    SyntaxError,
    "not valid UTF-8",
  );
  assertThrows(
    () => decoder.decode(LSN, bytes("I", u32(16384), "N", u16(3), text("1"))),
    SyntaxError,
    "truncated",
  );
  assertThrows(() => decoder.decode(LSN, new Uint8Array(0)), SyntaxError, "empty message");
  // The decoder is still usable after errors.
  assertEquals(
    decoder.decode(LSN, bytes("I", u32(16384), "N", u16(3), text("1"), "n", "n")).length,
    1,
  );
});

Deno.test("pgoutputOptions() quotes publication names as identifiers", () => {
  assertEquals(pgoutputOptions(["pub", 'My "Pub"']), [
    ["proto_version", "1"],
    ["publication_names", '"pub","My ""Pub"""'],
  ]);
  assertThrows(() => pgoutputOptions([]), RangeError);
});

Deno.test("built-in type names match the server's format_type()", async () => {
  await withDatabaseOf(async (sql) => {
    const oids = [...BUILTIN_TYPE_NAMES.keys()];
    const rows = await sql`select oid::int as oid, format_type(oid, null) as name from pg_type
                           where oid = any(${oids}::oid[])`;
    assertEquals(rows.length, oids.length);
    for (const row of rows) {
      assertEquals(BUILTIN_TYPE_NAMES.get(row.oid as number), row.name as string);
    }
  });
});

Deno.test("pgoutput from a real slot: a transaction with a replication origin decodes, the Origin message is skipped", async () => {
  await withDatabaseOf(async (sql, database) => {
    await sql`create table o (id integer primary key, v text)`;
    await sql`create publication p for table o`;
    const slot = `${database}_origin`;
    await sql`select pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
    await sql`select pg_replication_origin_create('pgferry_decode_upstream')`;
    // The origin is recorded at commit: reset the session only afterwards (max: 1, one session).
    await sql`select pg_replication_origin_session_setup('pgferry_decode_upstream')`;
    try {
      await sql.begin(async (tx) => {
        await tx`select pg_replication_origin_xact_setup('0/AB', now())`;
        await tx`insert into o values (1, 'from upstream')`;
      });
    } finally {
      await sql`select pg_replication_origin_session_reset()`;
      await sql`select pg_replication_origin_drop('pgferry_decode_upstream')`;
    }
    const raw = await sql.unsafe(
      `select lsn::text, data from pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'p')`,
      [slot],
    );
    assert(raw.some((r) => (r.data as Uint8Array)[0] === 0x4f), "an Origin message was sent");
    const changes: Change[] = decodeAll(
      "pgoutput",
      raw.map((r) => ({ lsn: r.lsn, xid: "", data: r.data })),
      undefined,
    );
    assertEquals(changes.map((c) => c.tag), ["Begin", "Insert", "Commit"]);
    assert(changes[1]?.tag === "Insert");
    assertEquals(changes[1].new.values, ["1", "from upstream"]);
  });
});

Deno.test("pgoutput from a real slot: int8, numeric, float8 and backslashes arrive as the server prints them", async () => {
  await withDatabaseOf(async (sql, database) => {
    await sql`create table k (id bigint primary key, n numeric, f double precision, t text)`;
    await sql`create publication pgferry_decode for table k`;
    const slot = `${database}_pgoutput`;
    await sql`select pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
    await sql`insert into k values (9223372036854775807, 1e-40, 0.1::float8 + 0.2::float8, E'a\\b')`;
    const changes = decodeAll("pgoutput", await slotMessages(sql, slot, "pgoutput"), undefined);
    const insert = changes.find((c) => c.tag === "Insert");
    assert(insert?.tag === "Insert");
    const [expected] = await sql`select id::text, n::text, f::text, t from k`.values();
    assertEquals(insert.new.values, expected);
  });
});
