import {
  castType,
  type Change,
  decodeChange,
  encodeChange,
  isUnchangedToast,
  UNCHANGED_TOAST,
} from "../lib/decode/change.ts";
import {
  formatPgTimestamp,
  parsePgTimestamp,
  PG_TIMESTAMP_INFINITY,
  PG_TIMESTAMP_MINUS_INFINITY,
} from "../lib/decode/pg_timestamp.ts";
import {
  flattenPluginOptions,
  formatStartReplicationOptions,
} from "../lib/decode/plugin_options.ts";
import { parseLsn } from "../lib/lsn.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { withDatabaseOf } from "./fixtures/decode/scenario.ts";

Deno.test("parsePgTimestamp() counts microseconds from 2000-01-01 UTC, offsets included", () => {
  assertEquals(parsePgTimestamp("2000-01-01 00:00:00+00"), 0n);
  assertEquals(parsePgTimestamp("2000-01-01 00:00:00"), 0n);
  assertEquals(parsePgTimestamp("2000-01-01 00:00:00.000001+00"), 1n);
  assertEquals(parsePgTimestamp("1999-12-31 23:59:59.999999+00"), -1n);
  assertEquals(parsePgTimestamp("2000-01-01 02:00:00+02"), 0n);
  assertEquals(parsePgTimestamp("1999-12-31 21:29:20-02:30:40"), 0n);
  assertEquals(parsePgTimestamp("2000-03-01 00:00:00.5+00"), 60n * 86_400_000_000n + 500_000n);
  assertEquals(parsePgTimestamp("1970-01-01 00:00:00+00"), -946_684_800_000_000n);
  assertEquals(parsePgTimestamp("infinity"), PG_TIMESTAMP_INFINITY);
  assertEquals(parsePgTimestamp("-infinity"), PG_TIMESTAMP_MINUS_INFINITY);
  assertThrows(
    () => parsePgTimestamp("2000-01-01T00:00:00Z"),
    SyntaxError,
    '"2000-01-01T00:00:00Z"',
  );
  assertThrows(() => parsePgTimestamp("2000-13-01 00:00:00+00"), SyntaxError, "no such date");
});

Deno.test("formatPgTimestamp() prints UTC ISO text that parsePgTimestamp() reads back", () => {
  assertEquals(formatPgTimestamp(0n), "2000-01-01 00:00:00+00");
  assertEquals(formatPgTimestamp(-1n), "1999-12-31 23:59:59.999999+00");
  assertEquals(formatPgTimestamp(757_382_400_120_000n), "2024-01-01 00:00:00.12+00");
  assertEquals(formatPgTimestamp(PG_TIMESTAMP_INFINITY), "infinity");
  for (
    const text of [
      "2024-02-29 23:59:59.999999+00",
      "0001-01-01 00:00:00+00",
      "0044-03-15 12:00:00+00 BC",
      "9999-12-31 23:59:59.5+00",
      "1900-03-01 00:00:00.000001+00",
    ]
  ) {
    assertEquals(formatPgTimestamp(parsePgTimestamp(text)), text);
  }
});

Deno.test("commit times convert exactly to and from the server's timestamptz", async () => {
  await withDatabaseOf(async (sql) => {
    const samples = [0n, -1n, 848_747_695_071_064n, 757_382_400_123_456n, -63_000_000_000_000_000n];
    for (const ts of samples) {
      // ::text first: postgres.js would send a timestamptz parameter through Date (milliseconds).
      const text = formatPgTimestamp(ts);
      const [row] = await sql`select ${text}::text::timestamptz::text as text,
        (extract(epoch from ${text}::text::timestamptz) * 1000000)::bigint::text as unix_us`;
      assertEquals(BigInt(row!.unix_us as string) - 946_684_800_000_000n, ts);
      assertEquals(parsePgTimestamp(row!.text as string), ts);
    }
  });
});

const SAMPLE: Change[] = [
  { tag: "Begin", lsn: parseLsn("0/10"), xid: 7, finalLsn: parseLsn("1/20"), commitTime: 5n },
  {
    tag: "Update",
    lsn: parseLsn("0/18"),
    relation: { schema: "s", table: "t" },
    old: {
      kind: "key",
      columns: [{ name: "id", typeOid: 23, typeName: "integer", key: true }],
      values: ["1"],
    },
    new: {
      columns: [
        { name: "id", typeOid: 23, typeName: "integer", key: true },
        { name: "b", typeOid: 25, typeName: null, key: false },
        { name: "c", typeOid: 0, typeName: "text", key: false },
      ],
      values: ["2", UNCHANGED_TOAST, null],
    },
  },
  {
    tag: "Truncate",
    lsn: parseLsn("0/19"),
    relations: [{ schema: "s", table: "t" }],
    cascade: true,
    restartIdentity: false,
  },
  { tag: "Delete", lsn: parseLsn("0/1A"), relation: { schema: "s", table: "t" }, old: null },
  {
    tag: "Commit",
    lsn: parseLsn("1/50"),
    commitLsn: parseLsn("1/20"),
    endLsn: parseLsn("1/50"),
    commitTime: -5n,
  },
];

Deno.test("encodeChange() writes one JSON line that decodeChange() reads back", () => {
  for (const change of SAMPLE) {
    const line = encodeChange(change);
    assert(!line.includes("\n"));
    assertEquals(decodeChange(line), change);
  }
  const update = decodeChange(encodeChange(SAMPLE[1]!));
  assert(update.tag === "Update");
  assert(update.new.values[1] === UNCHANGED_TOAST, "the marker is the shared object again");
  assertEquals(
    encodeChange(SAMPLE[0]!),
    '{"tag":"Begin","lsn":"16","xid":7,"finalLsn":"4294967328","commitTime":"5"}',
  );
});

Deno.test("a row change is its fields joined by NUL, then its column arrays as JSON", () => {
  const columns = [{ name: "id", typeOid: 23, typeName: "integer", key: true }];
  const insert: Change = {
    tag: "Insert",
    lsn: 24n,
    relation: { schema: "s", table: "t" },
    new: { columns, values: ['it\'s \u0001 "x"\n', null, UNCHANGED_TOAST, ""] },
  };
  const cols = '[{"name":"id","typeOid":23,"typeName":"integer","key":true}]';
  assertEquals(
    encodeChange(insert),
    `I\u000024\u0000s\u0000t\u0000tnut\u0000it's \u0001 "x"\n\u0000\u0000\u0000\u0000\u0001${cols}\u0001`,
  );
  assertEquals(decodeChange(encodeChange(insert)), insert);
  const del: Change = {
    tag: "Delete",
    lsn: 25n,
    relation: { schema: "s", table: "t" },
    old: { kind: "row", columns, values: ["7"] },
  };
  assertEquals(
    encodeChange(del),
    `D\u000025\u0000s\u0000t\u0000-\u0000row\u0000t\u00007\u0001\u0001${cols}`,
  );
  assertEquals(decodeChange(encodeChange(del)), del);
  // Two rows of one table shape share one decoded column array.
  const [a, b] = [decodeChange(encodeChange(insert)), decodeChange(encodeChange(insert))];
  assert(a.tag === "Insert" && b.tag === "Insert" && a.new.columns === b.new.columns);
  // The all-JSON row changes of older spools still read.
  const json = JSON.stringify({ ...insert, lsn: "24", new: { columns, values: ["1"] } });
  assertEquals(decodeChange(json), { ...insert, new: { columns, values: ["1"] } });
});

Deno.test("decodeChange() rejects what encodeChange() did not write", () => {
  for (
    const bad of [
      "X\u00001\u0000s\u0000t\u0000\u0000\u0001[]\u0001",
      "I\u00001x\u0000s\u0000t\u0000\u0000\u0001[]\u0001",
      "I\u00001\u0000s\u0000t\u0000q\u00001\u0000\u0001[]\u0001",
      "I\u00001\u0000s\u0000t\u0000\u0000key\u0000\u0001[]\u0001[]",
      "I\u00001\u0000s\u0000t\u0000tt\u0000a\u0000\u0001[]\u0001",
      "D\u00001\u0000s\u0000t\u0000\u0000\u0001[]\u0001",
      "I\u00001\u0000s\u0000t\u0000\u0000",
      "U\u00001\u0000s\u0000t\u0000\u0000\u0001[oops\u0001",
    ]
  ) {
    assertThrows(() => decodeChange(bad), SyntaxError, "Invalid encoded change");
  }
  assertThrows(() => decodeChange("{"), SyntaxError, "Invalid encoded change");
  assertThrows(() => decodeChange('{"tag":"Nope"}'), SyntaxError, "Invalid encoded change");
  assertThrows(() => decodeChange('{"tag":"Begin","lsn":1.5,"xid":1}'), SyntaxError, 'field "lsn"');
});

Deno.test("isUnchangedToast() recognises the marker after structured clone; text and null are values", () => {
  const cloned = structuredClone(SAMPLE[1]!);
  assert(cloned.tag === "Update");
  assert(cloned.new.values[1] !== UNCHANGED_TOAST);
  assert(isUnchangedToast(cloned.new.values[1]!));
  assert(!isUnchangedToast("unchanged-toast-datum"));
  assert(!isUnchangedToast(null));
});

Deno.test("castType() avoids the one-character meaning of bare character and bit", () => {
  const cast = (typeName: string | null) =>
    castType({ name: "c", typeOid: 0, typeName, key: false });
  assertEquals(cast("character"), "bpchar");
  assertEquals(cast("character[]"), "bpchar[]");
  assertEquals(cast("bit"), "varbit");
  assertEquals(cast("character(5)"), "character(5)");
  assertEquals(cast("character varying"), "character varying");
  assertEquals(cast("integer[]"), "integer[]");
  assertEquals(cast(null), null);
});

Deno.test("plugin options format like pg_recvlogical's and flatten for the SQL functions", () => {
  const options = [["include-xids", "1"], ["publication_names", `"it's"`]] as const;
  assertEquals(
    formatStartReplicationOptions(options),
    `("include-xids" '1', "publication_names" '"it''s"')`,
  );
  assertEquals(formatStartReplicationOptions([]), "");
  assertEquals(flattenPluginOptions(options), ["include-xids", "1", "publication_names", `"it's"`]);
});
