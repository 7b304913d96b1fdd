/**
 * `catalog backup` while a follow runs under load, and `catalog restore`:
 * into a fresh directory, refused while follow runs, refused for damaged or
 * foreign files, and into the original directory, from where follow resumes
 * with the target equal to the source.
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import { SCHEMA_VERSION } from "../lib/catalog/schema.ts";
import { psql, streamArgs, waitFor } from "./helpers/pg.ts";

const SCHEMA = `
create table acc (id integer primary key, v bigint not null);
create table hist (id bigserial primary key, acc integer, delta integer);
`;
const WORKLOAD = `
\\set id random(1, 500)
\\set d random(-5, 5)
begin;
insert into acc (id, v) values (:id, :d) on conflict (id) do update set v = acc.v + excluded.v;
insert into hist (acc, delta) values (:id, :d);
commit;
`;

function pgbench(uri: string, script: string, seconds: number): Promise<Deno.CommandOutput> {
  return new Deno.Command("/usr/lib/postgresql/15/bin/pgbench", {
    args: ["-n", "-c", "2", "-T", String(seconds), "-f", script, uri],
    stdout: "null",
    stderr: "piped",
  }).output();
}

/** quick_check and the sentinel row of a catalog file, read straight with SQLite. */
function inspect(path: string): { check: string; version: number; replay: string } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const check = (db.prepare("pragma quick_check").get() as { quick_check: string }).quick_check;
    const version = (db.prepare("select version from schema_version").get() as {
      version: number;
    }).version;
    const replay = (db.prepare("select replay_lsn from sentinel").get() as { replay_lsn: string })
      .replay_lsn;
    return { check, version, replay };
  } finally {
    db.close();
  }
}

Deno.test("catalog backup while follow runs under load; restore checks the file, refuses while follow runs, and follow resumes from a restored catalog", async () => {
  const name = "catalog_backup";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const files = await tempDir(`${name}-files`);
  const script = join(files, "load.pgbench");
  await Deno.writeTextFile(script, WORKLOAD);
  const args = [
    "follow",
    ...streamArgs(source, target, dir, name),
    "--spool-segment-size",
    "65536",
    "--prune-interval",
    "1",
  ];
  const follow = spawnPgferry(args);
  const backups: string[] = [];
  try {
    await waitFor(async () =>
      (await pgferry(["status", "--dir", dir, "--json"])).stdout.includes('"running"')
    );
    const load = pgbench(source, script, 6);
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const file = join(files, `catalog-${i}.db`);
      const run = await pgferry(["catalog", "backup", file, "--dir", dir]);
      assertEquals(run.code, 0, run.stderr);
      assertStringIncludes(run.stdout, `schema version ${SCHEMA_VERSION}`);
      backups.push(file);
    }
    assertEquals((await load).code, 0);
    for (const file of backups) {
      const got = inspect(file);
      assertEquals([got.check, got.version], ["ok", SCHEMA_VERSION], file);
    }
    const replays = backups.map((file) => inspect(file).replay);
    assert(replays.at(-1) !== "0/0", `the backups follow replay_lsn: ${replays.join(", ")}`);

    // An existing file is not overwritten.
    const again = await pgferry(["catalog", "backup", backups[0]!, "--dir", dir]);
    assertEquals(again.code, 1);
    assertStringIncludes(again.stderr, "the file exists");

    // Restore into the live directory is refused while follow runs.
    const refused = await pgferry(["catalog", "restore", backups[1]!, "--dir", dir]);
    assertEquals(refused.code, 1, refused.stdout);
    assertStringIncludes(refused.stderr, `pgferry (pid ${follow.pid}) runs its receive stage`);
    assertStringIncludes(refused.stderr, "hint:");

    // Restore into a fresh directory: a working catalog.
    const fresh = join(await tempDir(`${name}-fresh`), "work");
    const restored = await pgferry(["catalog", "restore", backups[1]!, "--dir", fresh]);
    assertEquals(restored.code, 0, restored.stderr);
    assertEquals(inspect(join(fresh, "catalog.db")).check, "ok");
    const get = await pgferry(["stream", "sentinel", "get", "--replay-lsn", "--dir", fresh]);
    assertEquals(get.code, 0, get.stderr);
    assertEquals(get.stdout.trim(), replays[1]);

    // End the run, then put an earlier backup back in place and resume from it.
    const end = await withSql(
      source,
      async (sql) => (await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string,
    );
    const set = await pgferry(["stream", "sentinel", "set", "endpos", end, "--dir", dir]);
    assertEquals(set.code, 0, set.stderr);
    const out = await follow.output();
    assertEquals(out.code, 0, out.stderr);
    const back = await pgferry(["catalog", "restore", backups[1]!, "--dir", dir]);
    assertEquals(back.code, 0, back.stderr);
    assertEquals(inspect(join(dir, "catalog.db")).replay, replays[1]);
    assertEquals((await pgbench(source, script, 2)).code, 0);
    const endpos = await withSql(
      source,
      async (sql) => (await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string,
    );
    const resumed = await pgferry([...args, "--resume", "--endpos", endpos]);
    assertEquals(resumed.code, 0, resumed.stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await pgferry([
      "stream",
      "cleanup",
      "--source",
      source,
      "--target",
      target,
      "--slot-name",
      name,
      "--origin",
      name,
    ]);
  }
  await assertSameData(source, target, ["public"]);
});

function withDb(path: string, fn: (db: DatabaseSync) => void): void {
  const db = new DatabaseSync(path);
  try {
    fn(db);
  } finally {
    db.close();
  }
}

Deno.test("catalog restore refuses a damaged file, a foreign one and a newer schema, and leaves the catalog as it was", async () => {
  const dir = await tempDir("catalog_refuse");
  assertEquals((await pgferry(["stream", "sentinel", "setup", "0/10", "--dir", dir])).code, 0);
  const files = await tempDir("catalog_refuse-files");
  const good = join(files, "good.db");
  assertEquals((await pgferry(["catalog", "backup", good, "--dir", dir])).code, 0);
  assertEquals(
    (await pgferry(["stream", "sentinel", "set", "startpos", "0/20", "--dir", dir])).code,
    0,
  );

  const garbage = join(files, "garbage.db");
  await Deno.writeTextFile(garbage, "not a database ".repeat(500));
  const damaged = join(files, "damaged.db");
  const bytes = await Deno.readFile(good);
  for (let i = 4096; i < 4096 + 1500; i++) bytes[i] = 0x5a; // the second page's header on
  await Deno.writeFile(damaged, bytes);
  const freelist = join(files, "freelist.db");
  const header = await Deno.readFile(good);
  header[39] = 7; // the header's freelist page count: quick_check finds it wrong
  await Deno.writeFile(freelist, header);
  const foreign = join(files, "foreign.db");
  withDb(foreign, (db) => db.exec("create table t (x); insert into t values (1)"));
  const newer = join(files, "newer.db");
  await Deno.copyFile(good, newer);
  withDb(newer, (db) => db.exec(`update schema_version set version = ${SCHEMA_VERSION + 1}`));

  for (
    const [file, says] of [
      [garbage, "is not a usable catalog"],
      [damaged, "is damaged: database disk image is malformed"],
      [freelist, "is damaged: quick_check says *** in database main *** Freelist: size is"],
      [foreign, "is not a pgferry catalog"],
      [newer, "newer than this pgferry knows"],
      [join(files, "missing.db"), "Cannot read the catalog file"],
    ]
  ) {
    const run = await pgferry(["catalog", "restore", file!, "--dir", dir]);
    assertEquals(run.code, 1, `${file}: ${run.stdout}`);
    assertStringIncludes(run.stderr, says!);
  }
  const startpos = await pgferry(["stream", "sentinel", "get", "--startpos", "--dir", dir]);
  assertEquals(startpos.stdout.trim(), "0/20", "the catalog is unchanged");
  const restored = await pgferry(["catalog", "restore", good, "--dir", dir]);
  assertEquals(restored.code, 0, restored.stderr);
  const after = await pgferry(["stream", "sentinel", "get", "--startpos", "--dir", dir]);
  assertEquals(after.stdout.trim(), "0/10", "the backup is back in place");
});
