/**
 * `pgferry clone`, `compare schema|data` and `list progress`, run as separate
 * processes against the source and target clusters of scripts/test.sh.
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type postgres from "postgres";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { makeRichSource } from "./helpers/rich_schema.ts";
import { compareData } from "../lib/clone/compare_data.ts";
import { CopyConnection, pipeCopy } from "../lib/pg/copy_connection.ts";
import { syncSequences } from "../lib/clone/sequences.ts";
import { withSql } from "./helpers/tables.ts";
import { cleanupStream, setEndposCurrent, streamArgs, waitFor } from "./helpers/pg.ts";

type Sql = ReturnType<typeof postgres>;

async function value(uri: string, query: string): Promise<unknown> {
  return await withSql(uri, async (sql) => {
    const rows = await sql.unsafe(query);
    const row = rows[0] as Record<string, unknown> | undefined;
    return row === undefined ? undefined : Object.values(row)[0];
  });
}

/** Ordinary and partitioned tables of the database, as `schema.name`. */
async function tablesOf(uri: string): Promise<string[]> {
  return await withSql(uri, async (sql) => {
    const rows = await sql`
      select n.nspname || '.' || c.relname as name
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
         and n.nspname !~ '^pg_toast'
       order by 1`;
    return rows.map((r) => r["name"] as string);
  });
}

function expectOk(run: { code: number; stdout: string; stderr: string }, what: string): void {
  assertEquals(run.code, 0, `${what} failed:\n${run.stdout}\n${run.stderr}`);
}

Deno.test("clone copies a rich schema: compare schema and compare data find no difference", async () => {
  const db = await freshDatabases("clone_rich");
  await makeRichSource(db.source, 20_000);
  const dir = await tempDir("clone-rich");
  const clone = await pgferry([
    "clone",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    dir,
    "--table-jobs",
    "3",
    "--index-jobs",
    "2",
    "--split-tables-larger-than",
    "300kB",
  ]);
  expectOk(clone, "clone");
  assertStringIncludes(clone.stdout, "app.customers");
  assertStringIncludes(clone.stderr, "copied");

  const schema = await pgferry(["compare", "schema", "--source", db.source, "--target", db.target]);
  expectOk(schema, "compare schema");
  assertStringIncludes(schema.stdout, "the schemas are the same");
  const data = await pgferry(["compare", "data", "--source", db.source, "--target", db.target]);
  expectOk(data, "compare data");
  const comparison = await compareData(db.source, db.target);
  assert(comparison.equal, `differing: ${comparison.differing.join(", ")}`);
  assert(comparison.tables.length >= 18, "every table and sequence is compared");

  // Checked directly with SQL.
  const t = db.target;
  assertEquals(await value(t, "select count(*)::int from app.no_columns"), 3);
  assertEquals(await value(t, "select count(*)::int from only app.events"), 0);
  assertEquals(await value(t, "select count(*)::int from app.events"), 3000);
  assertEquals(await value(t, "select count(*)::int from only app.vehicles"), 2);
  assertEquals(await value(t, "select count(*)::int from app.vehicles"), 4);
  assertEquals(await value(t, "select count(*)::int from app.empty_table"), 0);
  assertEquals(await value(t, "select name_upper from app.customers where id = 7"), "NAME 7");
  assertEquals(
    await value(t, "select bio from app.customers where id = 11"),
    "null",
    "the text 'null' is not NULL",
  );
  assertEquals(await value(t, "select bio is null from app.customers where id = 7"), true);
  assertEquals(
    await value(t, "select length(bio) from app.customers where id = 100"),
    330_000,
    "large TOASTed text",
  );
  assertEquals(
    await value(t, "select ratio::text from app.customers where id = 1"),
    "1e+308",
  );
  // Identity and owned sequences continue after the copied rows; the free one too.
  assertEquals(
    await value(t, "insert into app.customers (email, name) values ('new@x', 'n') returning id"),
    "501",
  );
  assertEquals(await value(t, "select nextval('app.free_seq')::int"), 1010);
  // Large objects, with their comment.
  assertEquals(
    await value(t, "select convert_from(lo_get(424242), 'UTF8')"),
    "hello large object",
  );
  assertEquals(
    await value(t, "select md5(lo_get(424243))"),
    await value(db.source, "select md5(lo_get(424243))"),
  );
  assertEquals(
    await value(t, "select obj_description(424242, 'pg_largeobject')"),
    "a small one",
  );
  // Post-data: the materialized view is filled, the trigger is there and did not fire during COPY.
  assertEquals(await value(t, "select count(*)::int from app.order_totals"), 500);
  assertEquals(await value(t, "select count(*)::int from app.audit"), 3000);
  await withSql(t, (sql) =>
    sql.unsafe(
      "insert into app.orders (customer_id, amount, placed_at, note) values (1, 1, '2024-01-01', 'x')",
    ));
  assertEquals(await value(t, "select count(*)::int from app.audit"), 3001);
  // Constraints and indexes.
  assertEquals(
    await value(
      t,
      "select condeferrable and condeferred from pg_constraint where conname = 'orders_customer_id_fkey'",
    ),
    true,
  );
  assertEquals(
    await value(t, "select condeferrable from pg_constraint where conname = 'orders_note_key'"),
    true,
  );
  assertEquals(
    await value(
      t,
      "select contype::text from pg_constraint where conrelid = 'app.bookings'::regclass and contype = 'x'",
    ),
    "x",
  );
  assertStringIncludes(
    String(await value(t, "select pg_get_indexdef('app.orders_open_idx'::regclass)")),
    "WHERE (status <> 'done'::text)",
  );
  assertEquals(
    await value(t, "select obj_description('app.customers'::regclass, 'pg_class')"),
    "Customers, with a 'quote'",
  );
  assertEquals(
    await value(t, "select relpersistence::text from pg_class where oid = 'app.cache'::regclass"),
    "u",
  );

  // The catalog shows every part and index done; list progress reads it.
  const progress = await pgferry(["list", "progress", "--json", "--dir", dir]);
  expectOk(progress, "list progress");
  const report = JSON.parse(progress.stdout);
  assertEquals(report.totals.partsDone, report.totals.parts);
  assertEquals(report.totals.indexesDone, report.totals.indexes);
  assert(report.totals.parts > report.totals.tables, "big tables were split");
  assert(report.steps.every((s: { state: string }) => s.state === "done"));

  // Without --resume or --restart, earlier work stops a new clone with a hint.
  const again = await pgferry([
    "clone",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    dir,
  ]);
  assertEquals(again.code, 1);
  assertStringIncludes(again.stderr, "holds an earlier clone");
  assertStringIncludes(again.stderr, "hint: pass --resume");
  const resumed = await pgferry([
    "clone",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    dir,
    "--resume",
  ]);
  expectOk(resumed, "clone --resume of a finished clone");
  assertStringIncludes(resumed.stderr, "nothing to do");
});

Deno.test("compare data exits non-zero and names the tables that differ", async () => {
  const db = await freshDatabases("clone_compare");
  await withSql(db.source, (sql) =>
    sql.unsafe(`
      create table same (id int primary key, v text);
      create table changed (id int primary key, v text);
      create table nokey (v text);
      create sequence free_seq;
      insert into same select i, 'v' || i from generate_series(1, 1000) i;
      insert into changed select i, 'v' || i from generate_series(1, 1000) i;
      insert into nokey select 'v' || i from generate_series(1, 100) i;`));
  const dir = await tempDir("clone-compare");
  expectOk(
    await pgferry(["clone", "--source", db.source, "--target", db.target, "--dir", dir]),
    "clone",
  );
  expectOk(
    await pgferry(["compare", "data", "--source", db.source, "--target", db.target]),
    "compare data",
  );
  await withSql(db.target, (sql) =>
    sql.unsafe(`update changed set v = 'other' where id = 500;
                insert into nokey values ('extra')`));
  const run = await pgferry(["compare", "data", "--source", db.source, "--target", db.target]);
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, "public.changed");
  assertStringIncludes(run.stderr, "public.nokey");
  assert(!run.stderr.includes("public.same"), run.stderr);
  const result = await compareData(db.source, db.target);
  assertEquals(result.differing, ["public.changed", "public.nokey"]);
  const nokey = result.tables.find((t) => t.table === "public.nokey")!;
  assertEquals([nokey.source?.rows, nokey.target?.rows], [100, 101]);

  // Sequences: compare data sees them; syncSequences (the end of clone --follow) sets them.
  await withSql(db.source, (sql) => sql.unsafe("select nextval('free_seq'), nextval('free_seq')"));
  assertEquals(
    (await compareData(db.source, db.target)).differing,
    ["public.changed", "public.nokey", "sequence public.free_seq"],
  );
  assertEquals(await syncSequences(db.source, db.target), 1);
  assertEquals(
    (await compareData(db.source, db.target)).differing,
    ["public.changed", "public.nokey"],
  );

  await withSql(db.target, (sql) => sql.unsafe("alter table changed add column extra int"));
  const schema = await pgferry(["compare", "schema", "--source", db.source, "--target", db.target]);
  assertEquals(schema.code, 1);
  assertStringIncludes(schema.stdout, "extra on target: column public.changed.extra");
});

/** Parts and indexes the catalog says are done, with when. */
function doneWork(dir: string): Map<string, string> {
  const db = new DatabaseSync(join(dir, "catalog.db"), { readOnly: true });
  try {
    const done = new Map<string, string>();
    for (
      const row of db.prepare(
        "select table_oid, part, done_at from clone_table_part where done_at is not null",
      ).all() as { table_oid: number; part: number; done_at: string }[]
    ) done.set(`part ${row.table_oid}/${row.part}`, row.done_at);
    for (
      const row of db.prepare(
        "select oid, done_at from clone_index where done_at is not null",
      ).all() as { oid: number; done_at: string }[]
    ) done.set(`index ${row.oid}`, row.done_at);
    for (
      const row of db.prepare(
        "select name, done_at from clone_step where done_at is not null",
      ).all() as { name: string; done_at: string }[]
    ) done.set(`step ${row.name}`, row.done_at);
    return done;
  } finally {
    db.close();
  }
}

/** Starts the clone and kills it (SIGKILL) after `delay` ms; returns its exit code. */
async function killAfter(
  args: string[],
  delay: number,
): Promise<{ code: number; stderr: string }> {
  const child = spawnPgferry(args);
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // it finished already
    }
  }, delay);
  const { code, signal, stderr } = await child.output();
  clearTimeout(timer);
  if (code !== 0 && signal !== "SIGKILL") {
    throw new Error(`clone failed before it was killed:\n${stderr}`);
  }
  return { code, stderr };
}

/**
 * The parts of the tables a run's log says it copies again whole: a table split
 * by CTID whose interrupted part may have committed just before the kill (its
 * rows cannot be told apart on the target), the one case where done work is redone.
 */
function recopied(dir: string, log: string): Set<string> {
  const db = new DatabaseSync(join(dir, "catalog.db"), { readOnly: true });
  try {
    const parts = new Set<string>();
    const tables = db.prepare("select oid, nspname, relname, parts from clone_table").all() as {
      oid: number;
      nspname: string;
      relname: string;
      parts: number;
    }[];
    for (const t of tables) {
      if (!log.includes(`${t.nspname}.${t.relname}: copying all its CTID parts again`)) continue;
      for (let part = 0; part < t.parts; part++) parts.add(`part ${t.oid}/${part}`);
    }
    return parts;
  } finally {
    db.close();
  }
}

Deno.test("a clone killed at random moments ends equal to the source with --resume, without redoing done work", async () => {
  const db = await freshDatabases("clone_resume");
  await makeRichSource(db.source, 400_000);
  const dir = await tempDir("clone-resume");
  const args = [
    "clone",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    dir,
    "--table-jobs",
    "2",
    "--index-jobs",
    "2",
    "--split-tables-larger-than",
    "8MB",
  ];
  let before = new Map<string, string>();
  for (const [round, extra] of [[0, []], [1, ["--resume"]]] as const) {
    const delay = 200 + Math.floor(Math.random() * (round === 0 ? 1800 : 1300));
    const { code, stderr } = await killAfter([...args, ...extra], delay);
    const done = doneWorkSafe(dir);
    console.log(`round ${round}: killed after ${delay} ms (exit ${code}), ${done.size} items done`);
    const again = done.size > 0 ? recopied(dir, stderr) : new Set<string>();
    for (const [work, doneAt] of before) {
      if (again.has(work)) continue;
      assertEquals(done.get(work), doneAt, `${work} was done again`);
    }
    before = done;
  }
  if (before.size > 0 && !before.has("step clone")) {
    // Earlier work and no flag: stop with a hint instead of starting over.
    const plain = await pgferry(args);
    assertEquals(plain.code, 1, plain.stderr);
    assertStringIncludes(plain.stderr, "--resume");
  }
  // Another process reads the progress while the last run goes on.
  const child = spawnPgferry([...args, "--resume"]);
  const live = await pgferry(["list", "progress", "--json", "--dir", dir]);
  expectOk(live, "list progress during the clone");
  assert(Array.isArray(JSON.parse(live.stdout).steps));
  const { code, stdout, stderr } = await child.output();
  assertEquals(code, 0, `clone --resume failed:\n${stdout}\n${stderr}`);
  const after = doneWork(dir);
  const again = recopied(dir, stderr);
  for (const [work, doneAt] of before) {
    if (again.has(work)) continue;
    assertEquals(after.get(work), doneAt, `${work} was done again`);
  }
  const comparison = await compareData(db.source, db.target);
  assert(comparison.equal, `differing after resume: ${comparison.differing.join(", ")}`);
  const schema = await pgferry(["compare", "schema", "--source", db.source, "--target", db.target]);
  expectOk(schema, "compare schema after resume");
  assertEquals(await value(db.target, "select count(*)::int from app.big"), 400_000);
});

function doneWorkSafe(dir: string): Map<string, string> {
  try {
    return doneWork(dir);
  } catch {
    return new Map(); // no catalog (or no tables) yet
  }
}

Deno.test("filters: excluded schemas, tables, data and indexes are left out, and only those", async () => {
  const db = await freshDatabases("clone_filters");
  await makeRichSource(db.source, 2000);
  const dir = await tempDir("clone-filters");
  const filters = join(dir, "filters.ini");
  await Deno.writeTextFile(
    filters,
    `# pgcopydb format
[exclude-schema]
"Odd Schema"

[exclude-table]
app.big_nokey
app.events

[exclude-table-data]
app.big

[exclude-index]
app.orders_lower_note_idx
`,
  );
  const run = await pgferry([
    "clone",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    join(dir, "work"),
    "--filters",
    filters,
  ]);
  expectOk(run, "clone with filters");
  assertEquals(await tablesOf(db.target), [
    "app.audit",
    "app.big",
    "app.bookings",
    "app.cache",
    "app.cars",
    "app.customers",
    "app.empty_table",
    "app.no_columns",
    "app.order_totals",
    "app.orders",
    "app.vehicles",
  ]);
  assertEquals(await value(db.target, "select count(*)::int from app.big"), 0);
  assertEquals(
    await value(db.target, "select count(*)::int from pg_namespace where nspname = 'Odd Schema'"),
    0,
  );
  assertEquals(await value(db.target, "select to_regclass('app.orders_lower_note_idx')"), null);
  assertEquals(
    await value(db.target, "select to_regclass('app.orders_open_idx')::text"),
    "app.orders_open_idx",
  );
  const data = await pgferry([
    "compare",
    "data",
    "--source",
    db.source,
    "--target",
    db.target,
    "--filters",
    filters,
  ]);
  expectOk(data, "compare data with the filters");
  const schema = await pgferry([
    "compare",
    "schema",
    "--source",
    db.source,
    "--target",
    db.target,
    "--filters",
    filters,
  ]);
  expectOk(schema, "compare schema with the filters");

  // include-only-table keeps those tables and what does not depend on the others.
  const only = await freshDatabases("clone_filters_only");
  await makeRichSource(only.source, 2000);
  const onlyFilters = join(dir, "only.ini");
  await Deno.writeTextFile(onlyFilters, "[include-only-table]\napp.customers\napp.orders\n");
  const onlyRun = await pgferry([
    "clone",
    "--source",
    only.source,
    "--target",
    only.target,
    "--dir",
    join(dir, "work-only"),
    "--filters",
    onlyFilters,
  ]);
  expectOk(onlyRun, "clone with include-only-table");
  assertEquals(await tablesOf(only.target), ["app.customers", "app.orders"]);
  assertEquals(
    await value(only.target, "select count(*)::int from app.customer_orders"),
    500,
    "a view over included tables is kept",
  );
  assertEquals(
    await value(only.target, "select to_regclass('app.free_seq')::text"),
    "app.free_seq",
  );
  assertEquals(await value(only.target, "select to_regclass('app.audit_id_seq')"), null);
  const onlyData = await compareData(only.source, only.target, {
    filters: {
      includeOnlySchema: [],
      excludeSchema: [],
      includeOnlyTable: [{ schema: "app", name: "customers" }, { schema: "app", name: "orders" }],
      excludeTable: [],
      excludeIndex: [],
      excludeTableData: [],
    },
  });
  assert(onlyData.equal, `differing: ${onlyData.differing.join(", ")}`);
  assertEquals(onlyData.tables.filter((t) => !t.table.startsWith("sequence")).length, 2);
});

Deno.test("pipeCopy() passes COPY frames through with bounded memory, a 64 MB row included", async () => {
  const db = await freshDatabases("clone_pipe");
  const ddl = "create table t (id int primary key, v text)";
  await withSql(db.source, (sql) =>
    sql.unsafe(`${ddl};
      insert into t select i, md5(i::text) || repeat('y', 60) from generate_series(1, 300000) i;
      insert into t values (0, repeat('x', 64 * 1024 * 1024))`));
  await withSql(db.target, (sql) => sql.unsafe(ddl));
  await using source = await CopyConnection.connect(db.source);
  await using target = await CopyConnection.connect(db.target);
  const baseline = Deno.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 5);
  let count;
  try {
    count = await pipeCopy(source, "copy t to stdout", target, "copy t from stdin");
  } finally {
    clearInterval(timer);
  }
  assertEquals(count.rows, 300_001);
  assert(count.bytes > 64 * 1024 * 1024 + 300_000 * 90, `bytes ${count.bytes}`);
  const growth = (peak - baseline) / 1024 / 1024;
  assert(growth < 40, `memory grew by ${growth.toFixed(0)} MB while copying ~90 MB`);
  const digest = "select count(*)::int as n, md5(string_agg(md5(v), '' order by id)) as h from t";
  assertEquals(
    await withSql(db.target, (sql) => sql.unsafe(digest)),
    await withSql(db.source, (sql) => sql.unsafe(digest)),
  );
});

Deno.test("the building blocks in one snapshot, step by step, make the same copy as clone", async () => {
  const db = await freshDatabases("clone_steps");
  await makeRichSource(db.source, 2000);
  const dir = await tempDir("clone-steps");
  const common = ["--source", db.source, "--target", db.target, "--dir", dir];
  const holder = spawnPgferry(["snapshot", "--source", db.source, "--dir", dir]);
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  assert(/^\S+-\S+/.test(first.value ?? ""), `snapshot id: ${first.value}`);
  // Rows written after the snapshot are not copied.
  await withSql(db.source, (sql) => sql.unsafe("insert into app.empty_table values (1, 'late')"));
  try {
    for (
      const step of [
        ["dump", "schema"],
        ["restore", "pre-data"],
        ["copy", "table-data"],
        ["copy", "sequences"],
        ["copy", "blobs"],
        ["copy", "indexes"],
        ["restore", "post-data"],
      ]
    ) {
      const run = await pgferry([...step, ...common]);
      expectOk(run, step.join(" "));
      if (["schema", "table-data", "blobs"].includes(step[1]!)) {
        assertStringIncludes(run.stderr, `held by "pgferry snapshot"`, step.join(" "));
      }
    }
  } finally {
    holder.kill("SIGTERM");
    await holder.status;
    await reader.cancel();
  }
  assertEquals(await value(db.target, "select count(*)::int from app.empty_table"), 0);
  await withSql(db.source, (sql) => sql.unsafe("delete from app.empty_table"));
  const comparison = await compareData(db.source, db.target);
  assert(comparison.equal, `differing: ${comparison.differing.join(", ")}`);
  expectOk(
    await pgferry(["compare", "schema", "--source", db.source, "--target", db.target]),
    "compare schema",
  );
  const progress = JSON.parse((await pgferry(["list", "progress", "--json", "--dir", dir])).stdout);
  assertEquals(progress.totals.partsDone, progress.totals.parts);
  assertEquals(progress.totals.indexesDone, progress.totals.indexes);
});

Deno.test("clone --follow under a write load, endpos set over TCP by another process: the target equals the source, sequences included", async () => {
  const db = await freshDatabases("clone_follow");
  await makeRichSource(db.source, 20_000);
  await withSql(
    db.source,
    (sql) =>
      sql.unsafe(`create table app.load (id bigserial primary key, n bigint, v text);
                insert into app.load (n, v) select g, md5(g::text) from generate_series(1, 1000) g`),
  );
  const dir = await tempDir("clone-follow");
  const script = join(dir, "..", "clone-follow.pgbench");
  await Deno.writeTextFile(
    script,
    `\\set id random(1, 1000)
begin;
insert into app.load (n, v) values (nextval('app.free_seq'), md5(random()::text));
update app.load set n = n + 1, v = v || 'u' where id = :id;
delete from app.load where id = :id + 500;
commit;
`,
  );
  const port = String(freePort());
  const name = "clone_follow";
  const follow = spawnPgferry([
    "clone",
    "--follow",
    ...streamArgs(db.source, db.target, dir, name),
    "--port",
    port,
    "--table-jobs",
    "2",
  ]);
  try {
    const tcp = ["--host", "127.0.0.1", "--port", port];
    expectOk(await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "60"]), "ping");
    const load = await new Deno.Command("/usr/lib/postgresql/15/bin/pgbench", {
      args: ["-n", "-c", "2", "-T", "8", "-f", script, db.source],
      stdout: "null",
      stderr: "piped",
    }).output();
    assertEquals(load.code, 0, new TextDecoder().decode(load.stderr));
    const elsewhere = await tempDir("clone-follow-elsewhere"); // not the clone's --dir
    const set = await pgferry([
      "stream",
      "sentinel",
      "set",
      "endpos",
      "--current",
      "--source",
      db.source,
      "--dir",
      elsewhere,
      ...tcp,
    ]);
    expectOk(set, `set endpos over TCP (clone --follow wrote: ${follow.stderrSoFar})`);
    const { code, stderr } = await follow.exit(180_000);
    assertEquals(code, 0, stderr);
    assertStringIncludes(stderr, "sequences from the source");
  } finally {
    follow.kill("SIGKILL");
    await pgferry([
      "stream",
      "cleanup",
      "--source",
      db.source,
      "--target",
      db.target,
      "--slot-name",
      name,
      "--origin",
      name,
    ]);
  }
  const comparison = await compareData(db.source, db.target);
  assert(comparison.equal, `differing: ${comparison.differing.join(", ")}`);
  assert(Number(await value(db.source, "select count(*) from app.load")) > 1000, "the load ran");
  for (const sequence of ["app.free_seq", "app.load_id_seq"]) {
    const query = `select last_value::text || ' ' || is_called::text from ${sequence}`;
    assertEquals(await value(db.target, query), await value(db.source, query), sequence);
  }
});

Deno.test("clone --follow --filters: the tables the filters leave out get neither rows nor changes", async () => {
  const db = await freshDatabases("clone_follow_filters");
  await withSql(db.source, (sql) =>
    sql.unsafe(`create schema f; create schema g;
      create table f.keep (id int primary key, v text);
      create table f.skip (id int primary key, v text);
      create table f.nodata (id int primary key, v text);
      create table f.parted (id int primary key, v text) partition by range (id);
      create table f.parted_1 partition of f.parted for values from (0) to (1000000);
      create table g.t (id int primary key, v text);
      insert into f.keep select g, 'k' from generate_series(1, 100) g;
      insert into f.skip select g, 's' from generate_series(1, 100) g;
      insert into f.nodata select g, 'n' from generate_series(1, 100) g;
      insert into f.parted select g, 'p' from generate_series(1, 100) g;
      insert into g.t select g, 'g' from generate_series(1, 100) g;`));
  const dir = await tempDir("clone-follow-filters");
  const filters = join(dir, "..", "clone-follow-filters.ini");
  await Deno.writeTextFile(
    filters,
    "[exclude-schema]\ng\n\n[exclude-table]\nf.skip\nf.parted\n\n[exclude-table-data]\nf.nodata\n",
  );
  const name = "clone_follow_filters";
  const work = join(dir, "work");
  const follow = spawnPgferry([
    "clone",
    "--follow",
    "--source",
    db.source,
    "--target",
    db.target,
    "--dir",
    work,
    "--filters",
    filters,
    "--slot-name",
    name,
    "--origin",
    name,
  ]);
  try {
    await waitFor(
      "the follow stages",
      async () =>
        (await pgferry(["stream", "sentinel", "get", "--apply", "--dir", work])).stdout.trim() ===
          "enabled",
    );
    await withSql(
      db.source,
      (sql) =>
        sql.unsafe(`insert into f.keep select g, 'k2' from generate_series(101, 200) g;
        update f.skip set v = 'changed'; insert into f.skip values (1000, 'new');
        insert into f.nodata values (1000, 'new'); update f.nodata set v = 'changed';
        insert into f.parted values (1000, 'new'); insert into g.t values (1000, 'new');
        delete from f.keep where id <= 10; truncate f.skip, f.nodata;`),
    );
    const set = await setEndposCurrent(db.source, work);
    expectOk(set, "set endpos");
    const { code, stderr } = await follow.exit(120_000);
    assertEquals(code, 0, stderr);
  } finally {
    follow.kill("SIGKILL");
    await cleanupStream(db.source, db.target, name);
  }
  assertEquals(await tablesOf(db.target), ["f.keep", "f.nodata"]);
  assertEquals(await value(db.target, "select count(*)::int from f.nodata"), 0);
  const keep =
    "select count(*)::text || ' ' || md5(string_agg(id || v, ',' order by id)) from f.keep";
  assertEquals(await value(db.target, keep), await value(db.source, keep));
});
