import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { decodeShapedRow, encodeShape, Shapes } from "../lib/spool/shaped_row.ts";
import { tempDir } from "./helpers/env.ts";
import { SpoolWriter } from "../lib/spool/writer.ts";
import { SpoolReader } from "../lib/spool/reader.ts";
import {
  patchBegin,
  RECORD_HEADER,
  RecordKind,
  recordLength,
  type SpoolRecord,
} from "../lib/spool/record.ts";
import { crc32 } from "../lib/spool/crc32.ts";
import { crc32 as zlibCrc32 } from "node:zlib";
import { listSegments, readCuts, spoolDir } from "../lib/spool/segments.ts";
import type { Change, Column } from "../lib/decode/change.ts";

const columns: Column[] = [
  { name: "id", typeOid: 23, typeName: "integer", key: true },
  { name: "v", typeOid: 25, typeName: "text", key: false },
];

/** Transaction `n`: BEGIN, `rows` inserts, COMMIT ending at (n + 1) * 0x1000. */
function txn(n: number, rows = 2, text = "x"): Change[] {
  const base = BigInt(n) * 0x1000n;
  const out: Change[] = [{ tag: "Begin", lsn: base + 1n, xid: 700 + n }];
  for (let r = 0; r < rows; r++) {
    out.push({
      tag: "Insert",
      lsn: base + 2n + BigInt(r),
      relation: { schema: "public", table: "t" },
      new: { columns, values: [String(n * 1000 + r), `${text}'\n\\${r}`] },
    });
  }
  out.push({
    tag: "Commit",
    lsn: base + 0x1000n,
    endLsn: base + 0x1000n,
    commitTime: 1234n + BigInt(n),
  });
  return out;
}

function drain(reader: SpoolReader): SpoolRecord[] {
  const out: SpoolRecord[] = [];
  for (let r = reader.next(); r !== undefined; r = reader.next()) out.push(r);
  return out;
}

function commits(records: SpoolRecord[]): bigint[] {
  return records.flatMap((r) =>
    r.kind === RecordKind.Commit && r.change.tag === "Commit" ? [r.change.endLsn] : []
  );
}

Deno.test("the records' CRC-32 is zlib's, at every length and offset, before and after crc32() loads node:zlib", async () => {
  const bytes = new Uint8Array(1200);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  // The first pass sums long ranges in JavaScript while node:zlib loads; the second with it.
  for (const pass of ["loading", "loaded"]) {
    for (let start = 0; start < 9; start++) {
      for (let end = start; end <= bytes.length; end += end < 600 ? 1 : 97) {
        assertEquals(
          crc32(bytes, start, end),
          zlibCrc32(bytes.subarray(start, end)),
          `${pass}: ${start}..${end}`,
        );
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

Deno.test("the spool returns complete transactions in order, with their values intact", async () => {
  const dir = await tempDir("spool");
  const writer = SpoolWriter.open(dir);
  for (let n = 0; n < 5; n++) for (const c of txn(n)) writer.append(c);
  writer.sync();
  const records = drain(new SpoolReader(dir));
  assertEquals(records.length, 5 * 4);
  const begin = records[0]!;
  assert(begin.kind === RecordKind.Begin);
  assertEquals([begin.endLsn, begin.commitTime], [0x1000n, 1234n]);
  const insert = records[1]!;
  assert(insert.kind === RecordKind.Change && insert.change.tag === "Insert");
  assertEquals(insert.change.new.values, ["0", "x'\n\\0"]);
  assertEquals(commits(records), [0x1000n, 0x2000n, 0x3000n, 0x4000n, 0x5000n]);
  writer.close();
});

Deno.test("a transaction still open is not handed out until its COMMIT is spooled", async () => {
  const dir = await tempDir("spool-open");
  const writer = SpoolWriter.open(dir);
  const [begin, a, b, commit] = txn(0);
  writer.append(begin!);
  writer.append(a!);
  writer.flush();
  const reader = new SpoolReader(dir);
  assertEquals(reader.next(), undefined);
  writer.append(b!);
  writer.flush();
  assertEquals(reader.next(), undefined);
  writer.append(commit!);
  writer.flush();
  assertEquals(drain(reader).length, 4);
  writer.close();
  reader.close();
});

Deno.test("asked for it, the reader hands out an open transaction as it is written; a cut of it is counted", async () => {
  const dir = await tempDir("spool-open-early");
  const writer = SpoolWriter.open(dir);
  for (const c of txn(0)) writer.append(c);
  const [begin, a, b, commit] = txn(1);
  writer.append(begin!);
  writer.append(a!);
  writer.flush();
  const reader = new SpoolReader(dir);
  assertEquals(drain(reader).length, 4);
  assert(reader.atOpenTransaction);
  const open = reader.next(true);
  assert(open?.kind === RecordKind.Begin && open.endLsn === 0n);
  assertEquals(reader.next()?.kind, RecordKind.Change);
  assertEquals(reader.next(), undefined);
  assert(!reader.atOpenTransaction);
  writer.append(b!);
  writer.append(commit!);
  writer.flush();
  assertEquals(commits(drain(reader)), [0x2000n]);
  // Cutting what a reader may have read is counted first; cutting what is only buffered is not.
  const cuts = readCuts(spoolDir(dir));
  const [begin2, c2] = txn(2);
  writer.append(begin2!);
  writer.append(c2!);
  writer.abandonTransaction();
  assertEquals(readCuts(spoolDir(dir)), cuts);
  writer.append(begin2!);
  writer.append(c2!);
  writer.flush();
  writer.abandonTransaction();
  assertEquals(readCuts(spoolDir(dir)), cuts + 1);
  for (const c of txn(2)) writer.append(c);
  writer.close();
  assertEquals(commits(drain(reader)), [0x3000n]);
  reader.close();
});

Deno.test("a transaction whose COMMIT is in the file stays on reopening, its BEGIN patched then", async () => {
  const dir = await tempDir("spool-unpatched");
  const writer = SpoolWriter.open(dir);
  for (const n of [0, 1]) for (const c of txn(n)) writer.append(c);
  const path = writer.segmentPath;
  writer.close();
  // As if the writer stopped between writing txn 1's COMMIT and patching its BEGIN.
  const bytes = await Deno.readFile(path);
  const begins: number[] = []; // where each BEGIN record starts
  for (let at = 0, length; (length = recordLength(bytes, at)) > 0; at += length) {
    if (bytes[at + RECORD_HEADER] === RecordKind.Begin) begins.push(at);
  }
  const at = begins[1]!;
  patchBegin(bytes.subarray(at, at + recordLength(bytes, at)), 0n, 0n);
  await Deno.writeFile(path, bytes);
  const cuts = readCuts(spoolDir(dir));
  const again = SpoolWriter.open(dir);
  assertEquals([again.lastCommit, again.cutAtOpen, readCuts(spoolDir(dir))], [0x2000n, 0, cuts]);
  for (const c of txn(2)) again.append(c);
  again.close();
  const records = drain(new SpoolReader(dir));
  assertEquals(commits(records), [0x1000n, 0x2000n, 0x3000n]);
  const begin = records[4]!;
  assert(begin.kind === RecordKind.Begin);
  assertEquals([begin.endLsn, begin.commitTime], [0x2000n, 1235n]);
});

Deno.test("a transaction the slot sends again is not spooled twice", async () => {
  const dir = await tempDir("spool-resend");
  let writer = SpoolWriter.open(dir);
  for (const n of [0, 1, 2]) for (const c of txn(n)) writer.append(c);
  writer.close();
  writer = SpoolWriter.open(dir);
  assertEquals(writer.lastCommit, 0x3000n);
  for (const n of [1, 2, 3]) for (const c of txn(n, n === 2 ? 5000 : 2)) writer.append(c);
  writer.close();
  assertEquals(commits(drain(new SpoolReader(dir))), [0x1000n, 0x2000n, 0x3000n, 0x4000n]);
});

Deno.test("a torn tail is cut back to the last complete transaction on open", async () => {
  const dir = await tempDir("spool-torn");
  const writer = SpoolWriter.open(dir);
  for (const n of [0, 1]) for (const c of txn(n)) writer.append(c);
  const [begin, a] = txn(2);
  writer.append(begin!);
  writer.append(a!);
  writer.sync();
  const path = writer.segmentPath;
  writer.close();
  const size = (await Deno.stat(path)).size;
  await Deno.truncate(path, size - 7); // cut the last record in the middle
  const again = SpoolWriter.open(dir);
  assertEquals(again.lastCommit, 0x2000n);
  for (const c of txn(2)) again.append(c);
  again.close();
  const records = drain(new SpoolReader(dir));
  assertEquals(commits(records), [0x1000n, 0x2000n, 0x3000n]);
  assertEquals(records.length, 12);
});

Deno.test("segments rotate at commit boundaries only, and the reader crosses them", async () => {
  const dir = await tempDir("spool-rotate");
  const writer = SpoolWriter.open(dir, { segmentSize: 1024 });
  for (let n = 0; n < 40; n++) for (const c of txn(n, n === 7 ? 300 : 3)) writer.append(c);
  writer.close();
  const segments = listSegments(spoolDir(dir));
  assert(segments.length > 5, `${segments.length} segments`);
  const reader = new SpoolReader(dir);
  const records = drain(reader);
  assertEquals(commits(records), Array.from({ length: 40 }, (_, n) => BigInt(n + 1) * 0x1000n));
  // Every segment starts with a BEGIN (a transaction never spans two files); the last one
  // may still be empty (the writer opens it at the rotation).
  for (const [i, segment] of segments.entries()) {
    const bytes = await Deno.readFile(segment.path);
    if (i === segments.length - 1 && bytes.length === 0) continue;
    if (i > 0) assertEquals(bytes[8], RecordKind.Begin, segment.name);
  }
  // Seeking skips whole segments that end before the position.
  reader.seek(0x20000n);
  const after = commits(drain(reader));
  assert(after[0]! <= 0x21000n && after.at(-1) === 0x28000n, String(after[0]));
  reader.close();
});

Deno.test("seek passes over what ends at or before the position, reading headers only: the shapes defined there still decode what follows", async () => {
  const dir = await tempDir("spool-seek");
  const writer = SpoolWriter.open(dir);
  for (let n = 0; n < 10; n++) {
    for (const c of txn(n)) writer.append(c);
    if (n === 4) writer.keepalive(0x5800n);
  }
  const [open, row] = txn(10);
  writer.append(open!);
  writer.append(row!);
  writer.flush();
  const reader = new SpoolReader(dir);
  reader.seek(0x5000n);
  const records = drain(reader);
  // The keepalive past the position stops it; txn 0's shape decodes txn 5's rows.
  assertEquals(records[0]!.kind, RecordKind.Keepalive);
  assertEquals(commits(records), [0x6000n, 0x7000n, 0x8000n, 0x9000n, 0xa000n]);
  const first = records.find((r) => r.kind === RecordKind.Change)!;
  assertEquals(
    first.kind === RecordKind.Change && first.change.tag === "Insert" && first.change.new.values,
    ["5000", "x'\n\\0"],
  );
  reader.seek(0x3000n);
  assertEquals(commits(drain(reader))[0], 0x4000n);
  // At the open transaction at the tail: nothing to hand out yet.
  reader.seek(0xa000n);
  assertEquals(reader.next(), undefined);
  assert(reader.atOpenTransaction);
  reader.close();
  writer.close();

  // A transaction whose BEGIN is in the file but not all of the rest: the reader stops at its BEGIN.
  const torn = await tempDir("spool-seek-torn");
  const w = SpoolWriter.open(torn);
  for (const c of txn(0)) w.append(c);
  w.flush();
  const path = listSegments(spoolDir(torn))[0]!.path;
  const first0 = (await Deno.stat(path)).size;
  for (const c of txn(1)) w.append(c);
  w.close();
  const bytes = await Deno.readFile(path);
  const beginLength = RECORD_HEADER + new DataView(bytes.buffer).getUint32(first0, true);
  await Deno.truncate(path, first0 + beginLength + 5);
  const r = new SpoolReader(torn);
  r.seek(0x2000n);
  const next = r.next();
  assertEquals(next?.kind === RecordKind.Begin && next.endLsn, 0x2000n);
  r.close();
});

Deno.test("keepalives are spooled between transactions only, and survive recovery", async () => {
  const dir = await tempDir("spool-keepalive");
  const writer = SpoolWriter.open(dir);
  for (const c of txn(0)) writer.append(c);
  writer.keepalive(0x1800n);
  writer.keepalive(0x1800n); // not twice
  const [begin] = txn(1);
  writer.append(begin!);
  writer.keepalive(0x1900n); // inside a transaction: ignored
  writer.close();
  const reopened = SpoolWriter.open(dir);
  reopened.close();
  const kinds = drain(new SpoolReader(dir)).map((r) => r.kind);
  assertEquals(kinds, [1, 2, 2, 3, RecordKind.Keepalive]);
  assertEquals(
    await Deno.stat(join(spoolDir(dir), listSegments(spoolDir(dir))[0]!.name)).then((s) =>
      s.size > 0
    ),
    true,
  );
});

Deno.test("row shapes are read back right across a re-sent transaction, a reopen and a changed table", async () => {
  const dir = await tempDir("spool-shapes");
  const wider: Column[] = [...columns, { name: "w", typeOid: 20, typeName: "bigint", key: false }];
  const other = { schema: "s", table: "u" };
  let writer = SpoolWriter.open(dir);
  for (const c of txn(0)) writer.append(c);
  // Transaction 0 again (the slot re-sends it), with another table first: cut back out, with
  // the shape it defined.
  const [begin, ...rest] = txn(0);
  writer.append(begin!);
  writer.append({ tag: "Insert", lsn: 5n, relation: other, new: { columns, values: ["1", "a"] } });
  for (const c of rest) writer.append(c);
  // Transaction 1 uses table t again, and a table of the same columns under another name.
  const [begin1, ...rest1] = txn(1);
  writer.append(begin1!);
  writer.append({
    tag: "Insert",
    lsn: 0x1001n,
    relation: other,
    new: { columns, values: ["2", "b"] },
  });
  for (const c of rest1) writer.append(c);
  writer.close();
  // Reopened: the numbers start over in the same segment. Table t gets a column, and a DELETE
  // without any old row (REPLICA IDENTITY NOTHING) goes in the self-contained format.
  writer = SpoolWriter.open(dir);
  const base = 0x2000n;
  writer.append({ tag: "Begin", lsn: base + 1n, xid: 900 });
  writer.append({
    tag: "Update",
    lsn: base + 2n,
    relation: { schema: "public", table: "t" },
    old: { kind: "key", columns: [columns[0]!], values: ["7"] },
    new: { columns: wider, values: ["8", null, "9"] },
  });
  writer.append({ tag: "Delete", lsn: base + 3n, relation: other, old: null });
  writer.append({ tag: "Commit", lsn: base + 0x1000n, endLsn: base + 0x1000n, commitTime: 1n });
  writer.close();

  const rows = drain(new SpoolReader(dir)).flatMap((r) =>
    r.kind === RecordKind.Change &&
      (r.change.tag === "Insert" || r.change.tag === "Update" || r.change.tag === "Delete")
      ? [r.change]
      : []
  );
  const seen = rows.map((c) => ({
    tag: c.tag,
    table: `${c.relation.schema}.${c.relation.table}`,
    new: c.tag === "Delete" ? undefined : [c.new.columns.map((x) => x.name), c.new.values],
    old: c.tag === "Insert" || c.old === null
      ? null
      : [c.old.kind, c.old.columns.map((x) => x.name), c.old.values],
  }));
  assertEquals(seen, [
    { tag: "Insert", table: "public.t", new: [["id", "v"], ["0", "x'\n\\0"]], old: null },
    { tag: "Insert", table: "public.t", new: [["id", "v"], ["1", "x'\n\\1"]], old: null },
    { tag: "Insert", table: "s.u", new: [["id", "v"], ["2", "b"]], old: null },
    { tag: "Insert", table: "public.t", new: [["id", "v"], ["1000", "x'\n\\0"]], old: null },
    { tag: "Insert", table: "public.t", new: [["id", "v"], ["1001", "x'\n\\1"]], old: null },
    {
      tag: "Update",
      table: "public.t",
      new: [["id", "v", "w"], ["8", null, "9"]],
      old: ["key", ["id"], ["7"]],
    },
    { tag: "Delete", table: "s.u", new: undefined, old: null },
  ]);
  // Rows of one shape share one column array (apply merges rows by it).
  const [a, b] = rows;
  assert(a?.tag === "Insert" && b?.tag === "Insert" && a.new.columns === b.new.columns);
});

Deno.test("decodeShapedRow() reads golden bytes and refuses malformed rows with a SyntaxError", () => {
  const shapes = new Shapes();
  shapes.add(encodeShape(0, { relation: { schema: "public", table: "t" }, columns }));
  shapes.add(
    encodeShape(1, { relation: { schema: "public", table: "t" }, columns: [columns[0]!] }),
  );
  const bytes = (text: string) => new TextEncoder().encode(text);
  // Written out by hand: i ␀ shape ␀ kinds (␀ value)×n ␀ old_kind.
  const insert = decodeShapedRow(bytes("i\x000\x00tn\x0042\x00\x00"), 7n, shapes);
  assert(insert.tag === "Insert");
  assertEquals([insert.lsn, insert.relation, insert.new.values], [7n, {
    schema: "public",
    table: "t",
  }, ["42", null]]);
  const update = decodeShapedRow(bytes("u\x000\x00tu\x008\x00\x00key\x001\x00t\x007"), 8n, shapes);
  assert(update.tag === "Update" && update.old !== null);
  assertEquals([update.old.kind, update.old.values, update.new.values.length], ["key", ["7"], 2]);
  const del = decodeShapedRow(bytes("d\x00-\x00key\x001\x00t\x00é"), 9n, shapes);
  assert(del.tag === "Delete" && del.old !== null);
  assertEquals(del.old.values, ["é"]);
  for (
    const bad of [
      "x\x000\x00t\x001\x00", // unknown tag
      "i\x009\x00tt\x001\x002\x00", // shape 9 never defined
      "i\x00\x00tt\x001\x002\x00", // no shape number
      "i\x000\x00tq\x001\x002\x00", // kind q
      "i\x000\x00tn\x001\x002\x00", // NULL with bytes
      "i\x000\x00tt\x001\x002\x00\x00extra", // more after the old kind
      "i\x000\x00tt\x001\x002\x00key\x001\x00t\x001", // an INSERT with an old key
      "d\x000\x00tt\x001\x002\x00key\x001\x00t\x001", // a DELETE with a new row
      "u\x000\x00tt\x001\x002\x00bad\x001\x00t\x001", // old kind "bad"
      "i\x000\x00ttt\x001\x002", // fewer values than kinds
    ]
  ) {
    assertThrows(
      () => decodeShapedRow(bytes(bad), 1n, shapes),
      SyntaxError,
      "Invalid spool record",
    );
  }
});
