/**
 * follow end to end, on real clusters and real processes: the scenario of
 * pgcopydb's follow tests over TCP and over SQLite, with each plugin; crash
 * safety under kill -9; an endpos inside a transaction; prefetch and apply.
 */
import { fromFileUrl } from "./helpers/path.ts";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import { formatLsn, parseLsn } from "../lib/lsn.ts";
import {
  cleanupStream,
  psql,
  setEndposCurrent,
  sourceLsn,
  streamArgs,
  waitFor,
} from "./helpers/pg.ts";

const FIXTURES = new URL("./fixtures/decode/", import.meta.url);
const SCHEMAS = ["dx", "Odd Schema"];

async function schemaOnBoth(source: string, target: string): Promise<void> {
  const schema = fromFileUrl(new URL("schema.sql", FIXTURES));
  await psql(source, { file: schema });
  await psql(target, { file: schema });
}

/** The second half of the workload: after a WAL switch, more of every kind of change. */
const MORE_DML = `
select pg_switch_wal();
insert into dx.vals (id, t, n, jb) select g, 'more ' || g, g / 7.0, jsonb_build_object('g', g) from generate_series(100, 400) g;
update dx.vals set t = t || ' (updated)' where id between 100 and 200;
delete from dx.vals where id between 300 and 350;
insert into dx.full_t values (9, 'nine', 'x'), (9, 'nine', 'x');
update dx.full_t set c = 'one of two' where a = 9;
`;

for (const plugin of ["pgoutput", "test_decoding", "wal2json"] as const) {
  Deno.test(`follow over TCP with ${plugin}: a separate process with its own --dir sets endpos --current, the target equals the source`, async () => {
    const name = `follow_tcp_${plugin}`;
    const { source, target } = await freshDatabases(name);
    await schemaOnBoth(source, target);
    const dir = await tempDir(name);
    const port = freePort();
    const follow = spawnPgferry([
      "follow",
      "--source",
      source,
      "--target",
      target,
      "--dir",
      dir,
      "--plugin",
      plugin,
      "--slot-name",
      name,
      "--origin",
      name,
      "--port",
      String(port),
    ]);
    try {
      const ping = await pgferry([
        "stream",
        "sentinel",
        "ping",
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--wait",
        "30",
      ]);
      assertEquals(ping.code, 0, ping.stderr);
      await psql(source, { file: fromFileUrl(new URL("dml.sql", FIXTURES)) });
      await psql(source, { sql: MORE_DML });
      const injector = await tempDir(`${name}-inject`); // not the follow's --dir
      const set = await pgferry([
        "stream",
        "sentinel",
        "set",
        "endpos",
        "--current",
        "--source",
        source,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--dir",
        injector,
      ]);
      assertEquals(set.code, 0, set.stderr);
      const { code, stderr } = await follow.exit(90_000);
      assertEquals(code, 0, stderr);
    } finally {
      try {
        follow.kill("SIGKILL");
      } catch { /* exited */ }
      await cleanupStream(source, target, name);
    }
    // wal2json 2.5 writes NaN and infinities as JSON null: a documented loss of that plugin.
    await assertSameData(source, target, SCHEMAS, plugin === "wal2json" ? ["dx.special"] : []);
  });
}

Deno.test("follow over SQLite: endpos set in the catalog stops it with the target equal to the source", async () => {
  const name = "follow_sqlite";
  const { source, target } = await freshDatabases(name);
  await schemaOnBoth(source, target);
  const dir = await tempDir(name);
  const follow = spawnPgferry([
    "follow",
    ...streamArgs(source, target, dir, name),
  ]);
  try {
    await waitFor(async () =>
      (await pgferry(["stream", "sentinel", "get", "--dir", dir])).code === 0
    );
    await psql(source, { file: fromFileUrl(new URL("dml.sql", FIXTURES)) });
    await psql(source, { sql: MORE_DML });
    const set = await setEndposCurrent(source, dir);
    assertEquals(set.code, 0, set.stderr);
    const { code, stderr } = await follow.exit(90_000);
    assertEquals(code, 0, stderr);
    const replay = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--replay-lsn"]);
    assertEquals(replay.stdout, set.stdout, "replay_lsn is exactly endpos");
    // Started again with the endpos already reached: exits 0 at once.
    const again = await pgferry([
      "follow",
      ...streamArgs(source, target, dir, name),
      "--resume",
    ]);
    assertEquals(again.code, 0, again.stderr);
    assert(again.stderr.includes("already reached"), again.stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, SCHEMAS);
});

const WORKLOAD_SCHEMA = `
create table acc (id integer primary key, v bigint not null, note text);
create table hist (id bigserial, acc integer, delta integer, at timestamptz default now());
`;
const WORKLOAD = `
\\set id random(1, 2000)
\\set d random(-5, 5)
begin;
insert into acc (id, v) values (:id, :d) on conflict (id) do update set v = acc.v + excluded.v;
insert into hist (acc, delta) values (:id, :d);
commit;
`;

Deno.test("crash safety: kill -9 follow at random moments 10 times under load, nothing lost or applied twice", async () => {
  const name = "follow_crash";
  const { source, target } = await freshDatabases(name);
  await psql(source, { sql: WORKLOAD_SCHEMA });
  await psql(target, { sql: WORKLOAD_SCHEMA });
  const dir = await tempDir(name);
  const script = `${dir}.pgbench`;
  await Deno.writeTextFile(script, WORKLOAD);
  const args = [
    "follow",
    ...streamArgs(source, target, dir, name),
  ];
  let follow = spawnPgferry(args);
  try {
    await waitFor(async () =>
      (await pgferry(["stream", "sentinel", "get", "--dir", dir])).code === 0
    );
    const load = new Deno.Command("/usr/lib/postgresql/15/bin/pgbench", {
      args: ["-n", "-c", "2", "-T", "25", "-f", script, source],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    for (let kill = 0; kill < 10; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 800 + Math.random() * 1400));
      if (follow.exited) {
        const { code, stderr } = await follow.output();
        throw new Error(`follow exited with ${code} before kill ${kill}:\n${stderr}`);
      }
      follow.kill("SIGKILL");
      await follow.status;
      follow = spawnPgferry([...args, "--resume"]);
    }
    const loaded = await load.output();
    assertEquals(loaded.code, 0, new TextDecoder().decode(loaded.stderr));
    const set = await setEndposCurrent(source, dir);
    assertEquals(set.code, 0, set.stderr);
    const { code, stderr } = await follow.exit(120_000);
    assertEquals(code, 0, stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  const rows = await withSql(
    source,
    async (sql) => (await sql`select count(*)::int as n from hist`)[0]!["n"],
  );
  assert(Number(rows) > 1000, `the load committed ${rows} transactions`);
  await assertSameData(source, target, ["public"]);
});

Deno.test("an endpos inside a transaction: the transaction is applied whole or not at all, then exactly once later", async () => {
  const name = "follow_midtxn";
  const { source, target } = await freshDatabases(name);
  await psql(source, { sql: WORKLOAD_SCHEMA });
  await psql(target, { sql: WORKLOAD_SCHEMA });
  const dir = await tempDir(name);
  const args = [
    "follow",
    ...streamArgs(source, target, dir, name),
  ];
  const setup = await pgferry([
    "stream",
    "setup",
    ...streamArgs(source, target, dir, name),
  ]);
  assertEquals(setup.code, 0, setup.stderr);
  // stream setup leaves apply off, as pgcopydb does: turn it on, as its users do.
  assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
  try {
    await psql(source, { sql: "insert into acc values (1, 1, 'before')" });
    // One transaction; endpos taken from its middle.
    const middle = await withSql(source, async (sql) => {
      return await sql.begin(async (tx) => {
        await tx`insert into hist (acc, delta) select g, 1 from generate_series(1, 5000) g`;
        const [row] = await tx`select pg_current_wal_insert_lsn()::text as lsn`;
        await tx`insert into hist (acc, delta) select g, 2 from generate_series(1, 5000) g`;
        return row!["lsn"] as string;
      });
    });
    await psql(source, { sql: "insert into acc values (2, 2, 'after')" });
    const first = await pgferry([...args, "--resume", "--endpos", middle]);
    assertEquals(first.code, 0, first.stderr);
    const mid = await withSql(
      target,
      async (sql) => (await sql`select count(*)::int as n from hist`)[0]!["n"],
    );
    assertEquals(mid, 0, "the transaction that ends after endpos is not applied, not even in part");
    const acc = await withSql(
      target,
      async (sql) => (await sql`select note from acc order by id`).map((r) => r["note"]),
    );
    assertEquals(acc, ["before"]);
    const replay = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--replay-lsn"]);
    assertEquals(replay.stdout.trim(), middle, "replay_lsn names endpos, not a later position");

    const end = await withSql(
      source,
      async (sql) => (await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string,
    );
    const second = await pgferry([...args, "--resume", "--endpos", end]);
    assertEquals(second.code, 0, second.stderr);
  } finally {
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
  const n = await withSql(
    target,
    async (sql) => (await sql`select count(*)::int as n from hist`)[0]!["n"],
  );
  assertEquals(n, 10000);
});

Deno.test("replay_lsn never runs ahead of what the target has flushed: spool files it lets go of survive a crash of the target", async () => {
  const name = "follow_durable";
  const { source, target } = await freshDatabases(name);
  for (const uri of [source, target]) await psql(uri, "create table d (id integer primary key)");
  const dir = await tempDir(name);
  // Apply commits asynchronously: with the WAL writer at 10 s, a commit stays unflushed for up
  // to 10 s after the writer's last flush (the server's own flushes only make this test easier).
  await psql(target, "alter system set wal_writer_delay = '10s'");
  await psql(target, "select pg_reload_conf()");
  const follow = spawnPgferry(["follow", ...streamArgs(source, target, dir, name)]);
  const replayLsn = async () => {
    const get = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--replay-lsn"]);
    return get.code === 0 ? parseLsn(get.stdout.trim()) : 0n;
  };
  try {
    // The first transaction wakes the WAL writer, which flushes and then sleeps for 10 s.
    for (const id of [1, 2]) {
      await psql(source, `insert into d values (${id})`);
      const end = parseLsn(await sourceLsn(source));
      await waitFor(`replay_lsn past transaction ${id}`, async () => (await replayLsn()) >= end);
    }
    const replay = await replayLsn();
    const [origin] = await withSql(
      target,
      (sql) =>
        sql`select pg_current_wal_flush_lsn()::text as flushed, local_lsn::text as local,
                 remote_lsn::text as remote
            from pg_replication_origin_status where external_id = ${name}`,
    );
    assert(origin !== undefined, "the origin is in pg_replication_origin_status");
    assert(
      parseLsn(origin["remote"]) <= replay,
      `replay_lsn ${formatLsn(replay)} covers the origin's progress ${origin["remote"]}`,
    );
    assert(
      parseLsn(origin["local"]) <= parseLsn(origin["flushed"]),
      `replay_lsn ${formatLsn(replay)} covers a commit at ${
        origin["local"]
      } on the target, flushed only up to ${origin["flushed"]}`,
    );
  } finally {
    follow.kill("SIGKILL");
    await follow.output();
    await psql(target, "alter system reset wal_writer_delay");
    await psql(target, "select pg_reload_conf()");
    await cleanupStream(source, target, name);
  }
});

Deno.test("set prefetch keeps receiving while apply waits; set apply resumes it", async () => {
  const name = "follow_prefetch";
  const { source, target } = await freshDatabases(name);
  await psql(source, { sql: WORKLOAD_SCHEMA });
  await psql(target, { sql: WORKLOAD_SCHEMA });
  const dir = await tempDir(name);
  const port = freePort();
  const follow = spawnPgferry([
    "follow",
    ...streamArgs(source, target, dir, name),
    "--port",
    String(port),
  ]);
  const tcp = ["--host", "127.0.0.1", "--port", String(port)];
  const count = () =>
    withSql(target, async (sql) => Number((await sql`select count(*) as n from hist`)[0]!["n"]));
  try {
    assertEquals((await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "30"])).code, 0);
    assertEquals((await pgferry(["stream", "sentinel", "set", "prefetch", ...tcp])).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 500)); // apply sees it within its poll
    await psql(source, {
      sql: "insert into hist (acc, delta) select g, 1 from generate_series(1, 1000) g",
    });
    const lsn = await withSql(
      source,
      async (sql) => (await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string,
    );
    // Received and spooled…
    await waitFor(async () => {
      const got = await pgferry(["stream", "sentinel", "get", ...tcp, "--json"]);
      const s = JSON.parse(got.stdout);
      return BigInt(`0x${s.write_lsn.replace("/", "").padStart(1, "0")}`) > 0n &&
        s.write_lsn !== "0/0" &&
        compareLsnText(s.write_lsn, lsn) >= 0;
    });
    // …but not applied.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assertEquals(await count(), 0);
    assertEquals((await pgferry(["stream", "sentinel", "set", "apply", ...tcp])).code, 0);
    await waitFor(async () => (await count()) === 1000);
    assertEquals(
      (await pgferry([
        "stream",
        "sentinel",
        "set",
        "endpos",
        "--current",
        "--source",
        source,
        ...tcp,
      ])).code,
      0,
    );
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 0, stderr);
  } finally {
    try {
      follow.kill("SIGKILL");
    } catch { /* exited */ }
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
});

function compareLsnText(a: string, b: string): number {
  const n = (t: string) => {
    const [hi, lo] = t.split("/");
    return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
  };
  const x = n(a), y = n(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

Deno.test("a row the target already has stops follow with an error naming the table and the source transactions", async () => {
  const name = "follow_conflict";
  const { source, target } = await freshDatabases(name);
  for (const uri of [source, target]) {
    await psql(uri, "create table t (id int primary key, v text)");
  }
  await psql(target, "insert into t values (1, 'only on the target')");
  const dir = await tempDir(name);
  const args = ["--source", source, "--target", target, "--dir", dir, "--slot-name", name];
  try {
    assertEquals((await pgferry(["stream", "setup", ...args, "--origin", name])).code, 0);
    assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
    await psql(source, "insert into t values (2, 'fine')");
    await psql(source, "insert into t values (1, 'conflict')");
    const end = await sourceLsn(source);
    const run = await pgferry(["follow", ...args, "--origin", name, "--resume", "--endpos", end]);
    assertEquals(run.code, 1, run.stderr);
    assertStringIncludes(run.stderr, 'Duplicate key value violates unique constraint "t_pkey"');
    assertStringIncludes(run.stderr, 'on table "public"."t"');
    assertStringIncludes(run.stderr, "while applying the source transactions ending after");
    assertStringIncludes(run.stderr, "hint:");
  } finally {
    await cleanupStream(source, target, name);
  }
});
