/** The pure parts of the clone: filters, split ranges, the archive's table of contents. */
import { assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  indexExcluded,
  parseFilters,
  schemaExcluded,
  tableDataExcluded,
  tableExcluded,
} from "../lib/clone/filters.ts";
import { ctidRanges, keyRanges, partCount } from "../lib/clone/split.ts";
import { dependentClosure, parseToc, useList } from "../lib/clone/toc.ts";
import { withoutRestrictKey } from "../lib/clone/pg_tools.ts";
import { createIndexSql } from "../lib/clone/build_index.ts";
import { copyInSql, copyOutSql } from "../lib/clone/copy_table.ts";
import type { SourceTable } from "../lib/clone/inventory.ts";

Deno.test("parseFilters() reads pgcopydb's sections, quoted names and ignores values", () => {
  const filters = parseFilters(`
# comment
; another
[exclude-schema]
"Odd Schema"
temp
[exclude-table]
public.orders = whatever
"My Schema"."a.b ""c"""
[exclude-index]
public.orders_idx
[exclude-table-data]
public.audit
`);
  assertEquals(filters.excludeSchema, ["Odd Schema", "temp"]);
  assertEquals(filters.excludeTable, [
    { schema: "public", name: "orders" },
    { schema: "My Schema", name: 'a.b "c"' },
  ]);
  assertEquals(filters.excludeIndex, [{ schema: "public", name: "orders_idx" }]);
  assertEquals(filters.excludeTableData, [{ schema: "public", name: "audit" }]);
  assertEquals(schemaExcluded(filters, "temp"), true);
  assertEquals(tableExcluded(filters, { schema: "temp", name: "x" }), true);
  assertEquals(tableExcluded(filters, { schema: "public", name: "orders" }), true);
  assertEquals(tableExcluded(filters, { schema: "public", name: "audit" }), false);
  assertEquals(tableDataExcluded(filters, { schema: "public", name: "audit" }), true);
  assertEquals(indexExcluded(filters, { schema: "public", name: "orders_idx" }), true);
});

Deno.test("parseFilters() makes partitions follow their partitioned table", () => {
  const only = parseFilters("[include-only-table]\npublic.events\n");
  const partition = { schema: "public", name: "events_2024" };
  assertEquals(tableExcluded(only, partition, [{ schema: "public", name: "events" }]), false);
  assertEquals(tableExcluded(only, partition, []), true);
  const exclude = parseFilters("[exclude-table]\npublic.events\n");
  assertEquals(tableExcluded(exclude, partition, [{ schema: "public", name: "events" }]), true);
});

Deno.test("parseFilters() refuses unknown sections, bad names and pgcopydb's incompatible pairs", () => {
  assertThrows(() => parseFilters("[exclude-tables]\na.b\n"), SyntaxError, "[exclude-tables]");
  assertThrows(() => parseFilters("a.b\n"), SyntaxError, "outside any [section]");
  assertThrows(() => parseFilters("[exclude-table]\njust_a_name\n"), SyntaxError, "schema.name");
  assertThrows(() => parseFilters('[exclude-table]\n"a.b\n'), SyntaxError, "Unterminated quote");
  assertThrows(
    () => parseFilters("[include-only-table]\na.b\n[exclude-table]\na.c\n"),
    SyntaxError,
    "include-only-table",
  );
  assertThrows(
    () => parseFilters("[include-only-schema]\na\n[exclude-schema]\nb\n"),
    SyntaxError,
    "include-only-schema",
  );
});

Deno.test("keyRanges() covers the key space with open-ended outer parts", () => {
  assertEquals(keyRanges("id", 1n, 100n, 4), [
    `"id" < 26`,
    `"id" >= 26 and "id" < 51`,
    `"id" >= 51 and "id" < 76`,
    `"id" >= 76`,
  ]);
  assertEquals(keyRanges("id", 5n, 5n, 4), [], "one key value: no split");
  assertEquals(keyRanges("id", -10n, 9n, 2), [`"id" < 0`, `"id" >= 0`]);
  assertEquals(
    keyRanges("id", 0n, 18446744073709551614n, 2)[1],
    `"id" >= 9223372036854775808`,
    "bigint keys stay exact",
  );
});

Deno.test("ctidRanges() and partCount() split by heap pages and size", () => {
  assertEquals(ctidRanges(10, 3), [
    "ctid < '(4,0)'::tid",
    "ctid >= '(4,0)'::tid and ctid < '(8,0)'::tid",
    "ctid >= '(8,0)'::tid",
  ]);
  assertEquals(ctidRanges(1, 4), []);
  assertEquals(partCount(100, { largerThan: 0, maxParts: 8 }), 1);
  assertEquals(partCount(100, { largerThan: 100, maxParts: 8 }), 1);
  assertEquals(partCount(250, { largerThan: 100, maxParts: 8 }), 3);
  assertEquals(partCount(10_000, { largerThan: 100, maxParts: 8 }), 8);
});

const TOC = `;
; Archive created at 2026-11-23 11:56:11 UTC
;
6; 2615 16421 SCHEMA - my schema postgres
220; 1259 16422 TABLE my schema t 1 postgres
;\tdepends on: 6
3386; 0 0 COMMENT my schema COLUMN "t 1".a postgres
;\tdepends on: 220
219; 1259 16410 TABLE public t_fk postgres
3387; 0 0 COMMENT public TABLE t_fk postgres
;\tdepends on: 219
3377; 2613 5555 BLOB - 5555 postgres
3227; 2606 16426 CONSTRAINT my schema t 1 t 1_pkey postgres
;\tdepends on: 220
3223; 1259 16420 INDEX public t_fk_aid_idx postgres
;\tdepends on: 219
3228; 2606 16415 FK CONSTRAINT public t_fk t_fk_aid_fkey postgres
;\tdepends on: 219 3227 218
`;

Deno.test("parseToc() reads entries, multi-word kinds, schemas with spaces and dependencies", () => {
  const entries = parseToc(TOC, ["public", "my schema", "my"]);
  assertEquals(entries.length, 9);
  assertEquals(
    entries.map((e) => [e.dumpId, e.catalogOid, e.objectOid, e.desc, e.namespace]),
    [
      [6, 2615, 16421, "SCHEMA", ""],
      [220, 1259, 16422, "TABLE", "my schema"],
      [3386, 0, 0, "COMMENT", "my schema"],
      [219, 1259, 16410, "TABLE", "public"],
      [3387, 0, 0, "COMMENT", "public"],
      [3377, 2613, 5555, "BLOB", ""],
      [3227, 2606, 16426, "CONSTRAINT", "my schema"],
      [3223, 1259, 16420, "INDEX", "public"],
      [3228, 2606, 16415, "FK CONSTRAINT", "public"],
    ],
  );
  assertEquals(entries[8]!.dependsOn, [219, 3227, 218]);
  // Leaving out the table in "my schema" leaves out its comment, its key and the FK to it.
  const out = dependentClosure(entries, (e) => e.catalogOid === 1259 && e.objectOid === 16422);
  assertEquals([...out].sort(), [220, 3227, 3228, 3386]);
  assertEquals(
    useList(entries, (e) => !out.has(e.dumpId)).split("\n").filter(Boolean).length,
    5,
  );
});

Deno.test("withoutRestrictKey() drops pg_dump's psql-only \\restrict lines", () => {
  const script = "--\n\\restrict abc123\nSET x = 1;\n\\unrestrict abc123\n";
  assertEquals(withoutRestrictKey(script), "--\nSET x = 1;\n");
  assertEquals(withoutRestrictKey("SET x = 1;\n"), "SET x = 1;\n");
});

Deno.test("index and COPY statements name columns and options as expected", () => {
  assertEquals(
    createIndexSql("CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id)"),
    "CREATE UNIQUE INDEX IF NOT EXISTS t_pkey ON public.t USING btree (id)",
  );
  const table: SourceTable = {
    oid: 1,
    schema: "s",
    name: "t",
    bytes: 0,
    mainBytes: 0,
    reltuples: 0,
    columns: ["a", 'b"c'],
    generatedColumns: 1,
    binarySafe: true,
    splitKey: "a",
    copyData: true,
  };
  assertEquals(
    copyOutSql(table, null, "binary"),
    `copy "s"."t" ("a", "b""c") to stdout with (format binary)`,
  );
  assertEquals(
    copyOutSql(table, `"a" < 10`, "text"),
    `copy (select "a", "b""c" from only "s"."t" where "a" < 10) to stdout`,
  );
  assertEquals(
    copyInSql(table, "binary", true),
    `copy "s"."t" ("a", "b""c") from stdin with (format binary, freeze)`,
  );
  assertEquals(copyInSql({ ...table, columns: [] }, "text", false), `copy "s"."t" from stdin`);
});
