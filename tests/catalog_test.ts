import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { tempDir } from "./helpers/env.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { readSentinel, setupSentinel, updateSentinel } from "../lib/catalog/sentinel_store.ts";
import { SCHEMA_VERSION } from "../lib/catalog/schema.ts";
import { OperatorError } from "../lib/errors.ts";

const HAMMER = fileURLToPath(new URL("./helpers/catalog_hammer.ts", import.meta.url));

function hammer(...args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", HAMMER, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test("8 processes × 200 increments under the write lock end at exactly 1600, with a reader beside them", async () => {
  const dir = await tempDir("catalog-race");
  {
    using catalog = await Catalog.open(dir, { create: true });
    await setupSentinel(catalog, 0n, 0n);
    await catalog.write((db) => {
      db.exec(
        "create table test_counter (n integer not null); insert into test_counter values (0)",
      );
    });
  }
  const stop = join(dir, "stop");
  const reader = hammer("read", dir, stop);
  const writers = Array.from({ length: 8 }, () => hammer("increment", dir, "200"));
  const results = await Promise.all(writers.map((w) => w.output()));
  await Deno.writeTextFile(stop, "");
  const read = await reader.output();
  const decoder = new TextDecoder();
  for (const result of [...results, read]) {
    assertEquals(decoder.decode(result.stderr), "");
    assertEquals(result.code, 0);
  }
  assert(Number(decoder.decode(read.stdout)) > 0, "the reader read the sentinel");
  using catalog = await Catalog.open(dir);
  const row = catalog.db.prepare("select n from test_counter").get() as { n: number };
  assertEquals(row.n, 1600);
});

Deno.test("opening many catalogs at once on a new directory creates the schema once", async () => {
  const dir = await tempDir("catalog-open");
  const catalogs = await Promise.all(
    Array.from({ length: 8 }, () => Catalog.open(dir, { create: true })),
  );
  try {
    const row = catalogs[0]!.db.prepare("select version from schema_version").all();
    assertEquals(row.length, 1);
    assertEquals((row[0] as { version: number }).version, SCHEMA_VERSION);
  } finally {
    for (const c of catalogs) c.close();
  }
});

Deno.test("a failed write transaction rolls back and releases the lock", async () => {
  const dir = await tempDir("catalog-rollback");
  using catalog = await Catalog.open(dir, { create: true });
  await setupSentinel(catalog, 1n, 2n);
  await assertRejects(
    () =>
      catalog.write((db) => {
        db.exec("update sentinel set endpos = '0/99'");
        throw new RangeError("boom");
      }),
    RangeError,
    "boom",
  );
  assertEquals(readSentinel(catalog.db).endpos, 2n);
  const after = await updateSentinel(catalog, { apply: true, replayLsn: 0x10n });
  assertEquals([after.apply, after.replayLsn, after.endpos], [true, 0x10n, 2n]);
});

Deno.test("a catalog without a sentinel says how to create one", async () => {
  const dir = await tempDir("catalog-nosentinel");
  using catalog = await Catalog.open(dir, { create: true });
  const err = await assertRejects(
    () => updateSentinel(catalog, { apply: true }),
    OperatorError,
    "not been set up",
  );
  assert((err as OperatorError).hint?.includes("sentinel setup"));
});

Deno.test("a catalog from a newer pgferry is refused", async () => {
  const dir = await tempDir("catalog-newer");
  {
    using catalog = await Catalog.open(dir, { create: true });
    await catalog.write((db) =>
      db.exec(`update schema_version set version = ${SCHEMA_VERSION + 1}`)
    );
  }
  await assertRejects(() => Catalog.open(dir), OperatorError, "newer than this pgferry knows");
});
