import {
  type Column,
  type Relation,
  type RelationColumn,
  UNCHANGED_TOAST,
} from "../lib/decode/change.ts";
import { WAL2JSON_OPTIONS, Wal2jsonDecoder } from "../lib/decode/wal2json.ts";
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

const RELATIONS: Relation[] = [
  {
    relid: 16384,
    schema: "public",
    table: "t",
    replicaIdentity: "d",
    columns: [
      relationColumn("id", 23, "integer", true),
      relationColumn("big", 25, "text"),
      relationColumn("small", 23, "integer"),
      relationColumn("g", 23, "integer", false, true),
    ],
  },
  {
    relid: 16385,
    schema: "public",
    table: "full",
    replicaIdentity: "f",
    columns: [relationColumn("a", 23, "integer"), relationColumn("b", 25, "text")],
  },
];
const lookup = (schema: string, table: string) =>
  RELATIONS.find((r) => r.schema === schema && r.table === table);

const T = { schema: "public", table: "t" };
const ID: Column = { name: "id", typeOid: 23, typeName: "integer", key: true };
const BIG: Column = { name: "big", typeOid: 25, typeName: "text", key: false };
const SMALL: Column = { name: "small", typeOid: 23, typeName: "integer", key: false };

function column(name: string, type: string, typeoid: number, value: string): string {
  return `{"name":${JSON.stringify(name)},"type":${
    JSON.stringify(type)
  },"typeoid":${typeoid},"value":${value}}`;
}

Deno.test("wal2json B and C carry xid, commit LSN, end LSN and commit time", () => {
  const decoder = new Wal2jsonDecoder();
  assertEquals(
    decoder.decode(
      LSN,
      '{"action":"B","xid":4294967295,"timestamp":"2000-01-01 00:00:00.000001+00","lsn":"0/16B3790","nextlsn":"0/16B37C0"}',
    ),
    [{ tag: "Begin", lsn: LSN, xid: 4294967295, finalLsn: parseLsn("0/16B3790"), commitTime: 1n }],
  );
  assertEquals(
    decoder.decode(
      parseLsn("0/16B37C0"),
      '{"action":"C","xid":4294967295,"timestamp":"1999-12-31 23:59:59-01","lsn":"0/16B3790","nextlsn":"0/16B37C0"}',
    ),
    [{
      tag: "Commit",
      lsn: parseLsn("0/16B37C0"),
      commitLsn: parseLsn("0/16B3790"),
      endLsn: parseLsn("0/16B37C0"),
      commitTime: 3_599_000_000n,
    }],
  );
});

Deno.test("wal2json B without xid and C without timestamp name the missing option", () => {
  assertThrows(
    () => new Wal2jsonDecoder().decode(LSN, '{"action":"B"}'),
    SyntaxError,
    "include-xids",
  );
  assertThrows(
    () => new Wal2jsonDecoder().decode(LSN, '{"action":"C","xid":1}'),
    SyntaxError,
    "include-timestamp",
  );
});

Deno.test("wal2json numbers keep every digit; bytea gets its \\x back; booleans become t/f", () => {
  const columns = [
    column("n", "numeric", 1700, "1234567890123456789012345678901234567890.5"),
    column("f", "double precision", 701, "0.30000000000000004"),
    column("h", "double precision", 701, "1e+308"),
    column("z", "real", 700, "-0"),
    column("i", "bigint", 20, "9223372036854775807"),
    column("b", "bytea", 17, '"00ff5c27"'),
    column("e", "bytea", 17, '""'),
    column("t", "boolean", 16, "true"),
    column("u", "boolean", 16, "false"),
    column("s", "text", 25, '"null"'),
    column("x", "text", 25, "null"),
    column("j", "jsonb", 3802, '"{\\"a\\": 1.0000000000000000000001, \\"q\\": \\"\\\\\\"\\"}"'),
    column("w", "text", 25, '"\\u00e9\\ud83d\\ude00 \\\\ \\n \\t"'),
    column("d", "dx.price", 16390, '"12.50"'),
    column("q", "text", 25, '"{\\"value\\":1, \\"value\\": 2}"'),
  ].join(",");
  const message = `{"action":"I","xid":1,"schema":"public","table":"v","columns":[${columns}]}`;
  const [change] = new Wal2jsonDecoder().decode(LSN, message);
  assert(change?.tag === "Insert");
  assertEquals(change.new.values, [
    "1234567890123456789012345678901234567890.5",
    "0.30000000000000004",
    "1e+308",
    "-0",
    "9223372036854775807",
    "\\x00ff5c27",
    "\\x",
    "t",
    "f",
    "null",
    null,
    '{"a": 1.0000000000000000000001, "q": "\\""}',
    "é😀 \\ \n \t",
    "12.50",
    '{"value":1, "value": 2}',
  ]);
  assertEquals(change.new.columns[0], {
    name: "n",
    typeOid: 1700,
    typeName: "numeric",
    key: false,
  });
});

Deno.test("wal2json U: identity repeating the new key is dropped, a changed key is the old key", () => {
  const decoder = new Wal2jsonDecoder(lookup);
  const same = `{"action":"U","xid":1,"schema":"public","table":"t","columns":[${
    column("id", "integer", 23, "1")
  },${column("big", "text", 25, '"b"')},${column("small", "integer", 23, "2")}],"identity":[${
    column("id", "integer", 23, "1")
  }]}`;
  assertEquals(decoder.decode(LSN, same), [
    {
      tag: "Update",
      lsn: LSN,
      relation: T,
      old: null,
      new: { columns: [ID, BIG, SMALL], values: ["1", "b", "2"] },
    },
  ]);
  const changed = same.replace(
    '"identity":[{"name":"id","type":"integer","typeoid":23,"value":1}',
    '"identity":[{"name":"id","type":"integer","typeoid":23,"value":7}',
  );
  const [change] = decoder.decode(LSN, changed);
  assert(change?.tag === "Update");
  assertEquals(change.old, { kind: "key", columns: [ID], values: ["7"] });
});

Deno.test("wal2json U: columns left out for unchanged TOAST come back as the marker; generated ones go", () => {
  const message = `{"action":"U","xid":1,"schema":"public","table":"t","columns":[${
    column("id", "integer", 23, "1")
  },${column("small", "integer", 23, "2")},${column("g", "integer", 23, "4")}],"identity":[${
    column("id", "integer", 23, "1")
  }]}`;
  assertEquals(new Wal2jsonDecoder(lookup).decode(LSN, message), [
    {
      tag: "Update",
      lsn: LSN,
      relation: T,
      old: null,
      new: { columns: [ID, BIG, SMALL], values: ["1", UNCHANGED_TOAST, "2"] },
    },
  ]);
  // Without a Relation the column is just absent (and nothing is known to be generated).
  const [change] = new Wal2jsonDecoder().decode(LSN, message);
  assert(change?.tag === "Update");
  assertEquals(change.new.columns.map((c) => c.name), ["id", "small", "g"]);
  assertEquals(change.old, null);
});

Deno.test("wal2json REPLICA IDENTITY FULL: identity is the whole old row", () => {
  const decoder = new Wal2jsonDecoder(lookup);
  const columns: Column[] = [
    { name: "a", typeOid: 23, typeName: "integer", key: true },
    { name: "b", typeOid: 25, typeName: "text", key: true },
  ];
  const row = `[${column("a", "integer", 23, "2")},${column("b", "text", 25, "null")}]`;
  assertEquals(
    decoder.decode(
      LSN,
      `{"action":"U","xid":1,"schema":"public","table":"full","columns":${row},"identity":${row}}`,
    ),
    [{
      tag: "Update",
      lsn: LSN,
      relation: { schema: "public", table: "full" },
      old: { kind: "row", columns, values: ["2", null] },
      new: { columns, values: ["2", null] },
    }],
  );
  assertEquals(
    decoder.decode(
      LSN,
      `{"action":"D","xid":1,"schema":"public","table":"full","identity":${row}}`,
    ),
    [{
      tag: "Delete",
      lsn: LSN,
      relation: { schema: "public", table: "full" },
      old: { kind: "row", columns, values: ["2", null] },
    }],
  );
});

Deno.test("wal2json D without identity has no old tuple", () => {
  assertEquals(
    new Wal2jsonDecoder().decode(LSN, '{"action":"D","xid":1,"schema":"public","table":"n"}'),
    [
      { tag: "Delete", lsn: LSN, relation: { schema: "public", table: "n" }, old: null },
    ],
  );
});

Deno.test("wal2json T messages of one statement merge into one Truncate, emitted with the next message", () => {
  const decoder = new Wal2jsonDecoder();
  const t = (table: string) => `{"action":"T","xid":1,"schema":"s","table":"${table}"}`;
  const second = parseLsn("0/16B4000");
  assertEquals(decoder.decode(LSN, t("p")), []);
  assertEquals(decoder.decode(LSN, t("p_1")), []);
  assertEquals(decoder.decode(second, t("q")), [
    {
      tag: "Truncate",
      lsn: LSN,
      relations: [{ schema: "s", table: "p" }, { schema: "s", table: "p_1" }],
      cascade: false,
      restartIdentity: false,
    },
  ]);
  const commit =
    '{"action":"C","xid":1,"timestamp":"2000-01-01 00:00:00+00","lsn":"0/16B4100","nextlsn":"0/16B4130"}';
  const out = decoder.decode(parseLsn("0/16B4130"), commit);
  assertEquals(out.map((c) => c.tag), ["Truncate", "Commit"]);
  assertEquals(out[0], {
    tag: "Truncate",
    lsn: second,
    relations: [{ schema: "s", table: "q" }],
    cascade: false,
    restartIdentity: false,
  });
});

Deno.test("wal2json numbers stay exact with pretty-print whitespace too", () => {
  const message =
    '{"action":"I", "xid": 1, "schema": "s", "table": "t", "columns": [{"name": "n", "type": "numeric", "value": 0.10000000000000000001}]}';
  const [change] = new Wal2jsonDecoder().decode(LSN, message);
  assert(change?.tag === "Insert");
  assertEquals(change.new.values, ["0.10000000000000000001"]);
});

Deno.test("wal2json logical messages produce no change", () => {
  const message =
    '{"action":"M","xid":1,"lsn":"0/1","transactional":true,"prefix":"p","content":"hi"}';
  assertEquals(new Wal2jsonDecoder().decode(LSN, message), []);
});

Deno.test("wal2json decoder rejects what it cannot read with a SyntaxError", () => {
  const decoder = new Wal2jsonDecoder();
  assertThrows(() => decoder.decode(LSN, '{"action":"I"'), SyntaxError, "not JSON");
  assertThrows(() => decoder.decode(LSN, '{"action":"X"}'), SyntaxError, 'unknown action "X"');
  assertThrows(
    () => decoder.decode(LSN, '{"action":"I","columns":[]}'),
    SyntaxError,
    "no schema or table",
  );
  assertThrows(
    () => decoder.decode(LSN, '{"action":"I","schema":"s","table":"t"}'),
    SyntaxError,
    'no "columns"',
  );
  assertThrows(() => decoder.decode(LSN, "[1]"), SyntaxError, "no action");
});

Deno.test("wal2json from a real slot: exact numbers, bytea, bool; NaN and Infinity arrive as NULL", async () => {
  await withDatabaseOf(async (sql, database) => {
    await sql`create table w (id int primary key, n numeric, f float8, r real, b bytea, o bool, big text, small int)`;
    const slot = `${database}_wal2json`;
    await sql`select pg_create_logical_replication_slot(${slot}, 'wal2json')`;
    await sql`insert into w values (1, 98765432109876543210987654321098765432.1, 0.1::float8 + 0.2::float8, 3.4e38, '\\x00', true,
                                    (select string_agg(md5(i::text), '') from generate_series(1, 400) i), 1)`;
    await sql`insert into w values (2, 'NaN', '-Infinity', 'Infinity', null, null, null, null)`;
    await sql`update w set small = 2 where id = 1`;
    const relations = await loadRelations(sql, ["public"]);
    const changes = decodeAll("wal2json", await slotMessages(sql, slot, "wal2json"), relations);
    const rows = changes.filter((c) => c.tag === "Insert").map((c) =>
      c.tag === "Insert" ? c.new.values : []
    );
    const [one] =
      await sql`select id::text, n::text, f::text, r::text, '\\x00', 't', big, small::text from w where id = 1`
        .values();
    assertEquals(rows[0], [...one!.slice(0, 7), "1"]);
    assertEquals(rows[1], ["2", null, null, null, null, null, null, null]);
    const update = changes.find((c) => c.tag === "Update");
    assert(update?.tag === "Update");
    assertEquals(update.new.values, [
      "1",
      one![1],
      one![2],
      one![3],
      "\\x00",
      "t",
      UNCHANGED_TOAST,
      "2",
    ]);
    assertEquals(WAL2JSON_OPTIONS[0], ["format-version", "2"]);
  });
});
