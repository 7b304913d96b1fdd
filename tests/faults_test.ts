/**
 * Faults a long follow meets, on real clusters and real processes: the target
 * restarted while apply works through a backlog, the source restarted while
 * receive streams under load, and a TCP proxy run by the test that cuts every
 * connection at random moments, in front of the target and in front of the
 * source. pgferry must retry through each of them and stop at endpos with the
 * target equal to the source: no row lost, none applied twice.
 *
 * `hist` has no key, so a transaction applied twice shows as extra rows.
 *
 * The restarts stop shared clusters, so each of those tests waits until its
 * cluster accepts connections again before it returns (tests run one after
 * another, files too). PGFERRY_TEST_VERBOSE=1 prints what the test did, with
 * times, and the follow process's log.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./helpers/assert.ts";
import { freshDatabases, sourceUri, targetUri, tempDir } from "./helpers/env.ts";
import { cleanupStream, psql, setEndposCurrent, streamArgs } from "./helpers/pg.ts";
import { pgferry, type Spawned, spawnPgferry } from "./helpers/pgferry.ts";
import { TcpProxy } from "./helpers/proxy.ts";
import { SpoolReader } from "../lib/spool/reader.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import postgres from "postgres";
import { connect } from "../lib/pg/connect.ts";
import { classifyPgError } from "../lib/pg/classify.ts";

const PG_BIN = "/usr/lib/postgresql/15/bin";

const SCHEMA = `
create table acc (id integer primary key, v bigint not null, note text);
create table hist (id bigserial, acc integer, delta integer, at timestamptz default now());
`;
/** Inserts, updates and deletes; rows are locked in ascending id order, so clients never deadlock. */
const WORKLOAD = `
\\set id random(1, 2000)
\\set d random(-5, 5)
begin;
delete from acc where id = :id - 1 and v < -20;
insert into acc (id, v) values (:id, :d) on conflict (id) do update set v = acc.v + excluded.v;
update acc set note = 'seen ' || :d where id = :id + 1;
insert into hist (acc, delta) values (:id, :d);
commit;
`;

// ---------------------------------------------------------------------------
// Processes and clusters

/** pgbench running the workload in the background: `-t` per client, or `-T` seconds. */
class Load {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<Deno.CommandOutput>;

  constructor(uri: string, script: string, limit: string[]) {
    this.#child = new Deno.Command(`${PG_BIN}/pgbench`, {
      args: ["-n", "-c", "2", ...limit, "-f", script, uri],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#output = this.#child.output();
  }

  /** Stops pgbench (its open transactions roll back) and waits for it. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGINT");
    } catch { /* it has exited */ }
    await this.#output;
  }

  /** Waits for pgbench; unless `interrupted` is allowed, it must have run every transaction. */
  async done(interrupted = false): Promise<void> {
    const out = await this.#output;
    if (!interrupted) assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  }
}

async function workloadScript(dir: string): Promise<string> {
  const script = `${dir}.pgbench`;
  await Deno.writeTextFile(script, WORKLOAD);
  return script;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check`; gives up after `ms`, or as soon as `child` (a follow process) has exited. */
async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  child?: Spawned,
  ms = 60_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (child !== undefined) await assertStillRunning(child, `while waiting until ${what}`);
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(200);
  }
}

/** The data directory of a test cluster (scripts/test.sh exports them). */
function clusterDir(side: "source" | "target"): string {
  const name = side === "source" ? "PGFERRY_TEST_SOURCE_DIR" : "PGFERRY_TEST_TARGET_DIR";
  const dir = Deno.env.get(name);
  if (!dir) throw new Error(`${name} is not set: run the tests through scripts/test.sh`);
  return dir;
}

/** pg_ctl on a test cluster, as the user that owns it (scripts/pg.sh runs them as postgres). */
async function pgCtl(dir: string, args: string[]): Promise<{ code: number; output: string }> {
  const pgCtlArgs = ["-D", `${dir}/data`, "-l", `${dir}/server.log`, ...args];
  const [command, commandArgs] = Deno.uid() === 0
    ? ["runuser", ["-u", "postgres", "--", `${PG_BIN}/pg_ctl`, ...pgCtlArgs]]
    : [`${PG_BIN}/pg_ctl`, pgCtlArgs];
  const out = await new Deno.Command(command, {
    args: commandArgs,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** Whether the server answers a query. */
async function accepting(uri: string): Promise<boolean> {
  const sql = postgres(uri, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Says what the test does, with the time, when PGFERRY_TEST_VERBOSE is set. */
function note(what: string): void {
  if (Deno.env.get("PGFERRY_TEST_VERBOSE")) {
    console.error(`${new Date().toISOString().slice(11, 23)} TEST   ${what}`);
  }
}

/**
 * `pg_ctl restart -m fast` of a test cluster, or with `outageMs`, a fast stop and
 * a start that long after (a server that takes a while to come back: pgferry's
 * reconnections are refused meanwhile). Returns once it accepts connections again.
 */
async function restartCluster(side: "source" | "target", outageMs = 0): Promise<void> {
  note(`restarting the ${side}${outageMs > 0 ? ` after ${outageMs} ms` : ""}`);
  const dir = clusterDir(side);
  if (outageMs === 0) {
    const restarted = await pgCtl(dir, ["-m", "fast", "-w", "-t", "120", "restart"]);
    assertEquals(restarted.code, 0, restarted.output);
  } else {
    const stopped = await pgCtl(dir, ["-m", "fast", "-w", "-t", "120", "stop"]);
    assertEquals(stopped.code, 0, stopped.output);
    await sleep(outageMs);
    await startCluster(side);
  }
  await waitFor(`the ${side} accepts connections`, () => accepting(uriOf(side)));
  note(`the ${side} is back`);
}

/** pg_ctl start on the cluster's own port (scripts/pg.sh gives it on the command line). */
async function startCluster(side: "source" | "target"): Promise<void> {
  const port = new URL(uriOf(side)).port;
  const started = await pgCtl(clusterDir(side), ["-o", `-p ${port}`, "-w", "-t", "120", "start"]);
  assertEquals(started.code, 0, started.output);
}

/** Starts the cluster if a failed test left it stopped, and waits until it accepts connections. */
async function ensureRunning(side: "source" | "target"): Promise<void> {
  const dir = clusterDir(side);
  if ((await pgCtl(dir, ["status"])).code === 3) await startCluster(side);
  await waitFor(`the ${side} accepts connections`, () => accepting(uriOf(side)));
}

function uriOf(side: "source" | "target"): string {
  return side === "source" ? sourceUri() : targetUri();
}

// ---------------------------------------------------------------------------
// The pipeline

interface Scenario {
  name: string;
  plugin: string;
  source: string;
  target: string;
  dir: string;
  script: string;
}

/** Fresh databases with the schema on both sides, and the slot and origin set up, apply on. */
async function scenario(name: string, plugin = "pgoutput"): Promise<Scenario> {
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  await cleanupStream(source, target, name); // left by an earlier run that failed
  const setup = await pgferry([
    "stream",
    "setup",
    ...streamArgs(source, target, dir, name),
    "--plugin",
    plugin,
  ]);
  assertEquals(setup.code, 0, setup.stderr);
  // stream setup leaves apply off, as pgcopydb does: turn it on, as its users do.
  assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
  return { name, plugin, source, target, dir, script: await workloadScript(dir) };
}

/** `follow --resume` of the scenario, with the URIs pgferry is to use (a proxy's, say). */
function follow(
  s: Scenario,
  uris: { source?: string; target?: string } = {},
  segmentSize = 2 ** 20,
): Spawned {
  return spawnPgferry([
    "follow",
    "--source",
    uris.source ?? s.source,
    "--target",
    uris.target ?? s.target,
    "--dir",
    s.dir,
    "--slot-name",
    s.name,
    "--origin",
    s.name,
    "--plugin",
    s.plugin,
    "--resume",
    "--spool-segment-size",
    String(segmentSize),
  ]);
}

/** Throws with its log when the follow process has exited: it must retry, not give up. */
async function assertStillRunning(child: Spawned, when: string): Promise<void> {
  if (!child.exited) return;
  const { code, stderr } = await child.output();
  throw new Error(`follow exited with ${code} ${when}:\n${stderr}`);
}

/** Sets endpos to the source's current position and waits for follow to exit 0 there. */
async function finish(s: Scenario, child: Spawned, ms = 120_000): Promise<string> {
  await assertStillRunning(child, "before endpos was set");
  const set = await setEndposCurrent(s.source, s.dir);
  assertEquals(set.code, 0, set.stderr);
  const { code, stderr } = await child.exit(ms);
  assertEquals(code, 0, stderr);
  const replay = await pgferry(["stream", "sentinel", "get", "--dir", s.dir, "--replay-lsn"]);
  assertEquals(replay.stdout, set.stdout, "replay_lsn is exactly endpos");
  return stderr;
}

/** Stops follow and drops slot and origin (origins are cluster-wide). */
async function cleanup(s: Scenario, child: Spawned | undefined): Promise<void> {
  child?.kill("SIGKILL");
  await child?.status;
  if (child !== undefined && Deno.env.get("PGFERRY_TEST_VERBOSE")) console.error(child.stderrSoFar);
  await cleanupStream(s.source, s.target, s.name);
}

function count(uri: string, table = "hist"): Promise<number> {
  return withSql(
    uri,
    async (sql) => Number((await sql.unsafe(`select count(*) as n from ${table}`))[0]!["n"]),
  );
}

// ---------------------------------------------------------------------------
// The faults

Deno.test("connect(): a one-connection client whose connection is lost fails every later query (retryable) instead of running it in a new session without its state", async () => {
  const sql = await connect(targetUri(), { role: "target" });
  try {
    assertEquals((sql.options as unknown as { max_lifetime: unknown }).max_lifetime, 0);
    await sql.unsafe("prepare faults_probe as select 1");
    const [row] = await sql`select pg_backend_pid() as pid`;
    await withSql(targetUri(), (other) => other`select pg_terminate_backend(${row!["pid"]})`);
    await sleep(300); // the client sees its connection close
    for (const query of [() => sql.unsafe("execute faults_probe"), () => sql`select 1`]) {
      const err = await assertRejects(query, Error);
      assertEquals(classifyPgError(err), "retryable", String(err));
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
});

Deno.test(
  "target restarted while apply works through a backlog under load, then stopped for 3 s: the target equals the source",
  async () => {
    const s = await scenario("faults_target_restart");
    let child: Spawned | undefined;
    try {
      // A backlog for apply: received before follow starts, applied while more comes. Four
      // times the most source transactions apply groups into one target transaction, so that
      // its first commit is mid-backlog however fast it goes.
      await new Load(s.source, s.script, ["-t", "10000"]).done();
      child = follow(s);
      const load = new Load(s.source, s.script, ["-T", "10"]);
      await waitFor(
        "apply has started on the backlog",
        async () => (await count(s.target)) > 0,
        child,
      );
      const [applied, committed] = await Promise.all([count(s.target), count(s.source)]);
      assert(applied < committed, `apply is mid-backlog: ${applied} of ${committed} rows`);
      await restartCluster("target");
      // Again once apply is back at work, and this time for a while.
      const before = await count(s.target);
      await waitFor("apply resumes", async () => (await count(s.target)) > before, child);
      await sleep(Math.random() * 1000);
      await restartCluster("target", 3000);
      await assertStillRunning(child, "after the target came back");
      await load.done();
      const log = await finish(s, child);
      assertMatch(log, /apply stopped, restarting/);
    } finally {
      await ensureRunning("target");
      await cleanup(s, child);
    }
    assert((await count(s.source)) > 4000);
    await assertSameData(s.source, s.target, ["public"]);
  },
);

for (const plugin of ["pgoutput", "test_decoding"]) {
  Deno.test(`source restarted while receive streams a pgbench load (${plugin}), then stopped for 3 s under load, the load run again after each: the target equals the source`, async () => {
    const s = await scenario(`faults_source_restart_${plugin}`, plugin);
    let child: Spawned | undefined;
    try {
      child = follow(s);
      for (const outage of [0, 3000]) {
        const load = new Load(s.source, s.script, ["-T", "6"]);
        const before = await count(s.source);
        await waitFor(
          "receive is streaming the load",
          async () => (await count(s.target)) > before,
          child,
        );
        await sleep(1000 + Math.random() * 1500);
        await restartCluster("source", outage);
        await load.done(true); // its clients lost their connections
        await assertStillRunning(child, "after the source came back");
      }
      // The load carries on after the last restart.
      await new Load(s.source, s.script, ["-t", "500"]).done();
      const log = await finish(s, child);
      assertMatch(log, /receive stopped, restarting/);
    } finally {
      await ensureRunning("source");
      await cleanup(s, child);
    }
    assert((await count(s.source)) > 1000);
    await assertSameData(s.source, s.target, ["public"]);
  });
}

for (const side of ["target", "source"] as const) {
  Deno.test({
    name:
      `a TCP proxy in front of the ${side} cuts every connection 6 times at random moments under load: the target equals the source`,
    fn: async () => {
      const s = await scenario(`faults_proxy_${side}`);
      const proxy = TcpProxy.start(side === "target" ? s.target : s.source);
      let child: Spawned | undefined;
      let load: Load | undefined;
      const cut: number[] = [];
      try {
        child = follow(
          s,
          side === "target"
            ? { target: proxy.uriFor(s.target) }
            : { source: proxy.uriFor(s.source) },
        );
        // Load until the last cut, however long pgferry's backoff makes that.
        load = new Load(s.source, s.script, ["-T", "300"]);
        await waitFor(
          "rows are applied through the proxy",
          async () => (await count(s.target)) > 0,
          child,
        );
        for (let i = 0; i < 6; i++) {
          // A random moment in the life of a connection pgferry has (re)opened.
          await waitFor(
            "pgferry is connected through the proxy",
            () => Promise.resolve(proxy.open > 0),
            child,
          );
          await sleep(200 + Math.random() * 1200);
          cut.push(proxy.cut());
          note(`cut ${cut.at(-1)} connections`);
          await assertStillRunning(child, `after cut ${i + 1}`);
        }
        await sleep(1000);
        await load.stop();
        const log = await finish(s, child);
        assertMatch(
          log,
          new RegExp(`${side === "target" ? "apply" : "receive"} stopped, restarting`),
        );
      } finally {
        await load?.stop();
        await cleanup(s, child);
        await proxy.close();
      }
      assert(cut.every((n) => n > 0), `connections cut: ${cut.join(", ")}`);
      assert((await count(s.source)) > 1000);
      await assertSameData(s.source, s.target, ["public"]);
    },
  });
}

Deno.test("large transactions applied as they arrive, the stream from the source cut while one is (until one is rolled back, 8 cuts at most): those cut are rolled back and applied again once, the target equals the source", async () => {
  const s = await scenario("faults_open_txn");
  const proxy = TcpProxy.start(s.source);
  const spool = new SpoolReader(s.dir); // follows the spool as apply does
  let child: Spawned | undefined;
  let stderr = "";
  let loading = true;
  let load: Promise<number> | undefined;
  try {
    // Segments of several transactions: one written again after a cut is laid out
    // differently (its row shape is defined anew), so a reader that missed the cut misreads.
    child = follow(s, { source: proxy.uriFor(s.source) }, 64 * 2 ** 20);
    // Back to back, 60,000 rows each, until the last cut.
    load = (async () => {
      let n = 0;
      for (; loading || n < 4; n++) {
        await psql(
          s.source,
          `insert into hist (acc, delta) select g % 2000, ${n} from generate_series(1, 60000) g`,
        );
      }
      return n;
    })();
    // What is already on its way when the stream is cut still arrives: the transaction
    // may complete anyway. So cut until one was cut short while applied.
    const rolledBack = /the transaction applied as it arrived was cut from the spool/;
    for (let i = 0; i < 8 && !rolledBack.test(child.stderrSoFar);) {
      const accepted = proxy.accepted;
      await waitFor("apply works on a transaction still arriving", async () => {
        while (spool.next() !== undefined) { /* to the end of what is spooled */ }
        return spool.atOpenTransaction && await applyHasWritten(s.target);
      }, child);
      const cut = proxy.cut();
      note(`cut ${cut} connections`);
      if (cut === 0) continue;
      i++;
      await waitFor(
        "receive connects again",
        () => Promise.resolve(proxy.accepted > accepted),
        child,
      );
      await assertStillRunning(child, `after cut ${i}`);
    }
    loading = false;
    const transactions = await load;
    stderr = await finish(s, child);
    assertEquals(await count(s.target), transactions * 60000);
  } finally {
    loading = false;
    await load?.catch(() => {});
    spool.close();
    await cleanup(s, child);
    await proxy.close();
  }
  assertMatch(stderr, /receive stopped, restarting/);
  assertMatch(stderr, /the transaction applied as it arrived was cut from the spool/);
  await assertSameData(s.source, s.target, ["public"]);
});

/** Whether pgferry's apply session on the target has an open transaction that wrote. */
function applyHasWritten(target: string): Promise<boolean> {
  return withSql(target, async (sql) =>
    (await sql.unsafe(
      "select 1 from pg_stat_activity where application_name = 'pgferry apply' and backend_xid is not null",
    )).length > 0);
}

Deno.test("a target that stays unreachable: follow stops after --retry-timeout with the last error and a hint", async () => {
  const name = "faults_retry_timeout";
  const { source, target } = await freshDatabases(name);
  for (const uri of [source, target]) await psql(uri, "create table t (id int primary key)");
  const dir = await tempDir(name);
  const proxy = TcpProxy.start(target);
  const follow = spawnPgferry([
    "follow",
    ...streamArgs(source, proxy.uriFor(target), dir, name),
    "--retry-timeout",
    "3",
  ]);
  try {
    const deadline = Date.now() + 30_000;
    while (!follow.stderrSoFar.includes("apply: origin")) {
      assert(Date.now() < deadline && !follow.exited, follow.stderrSoFar);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await proxy.close(); // the target is gone for good
    await psql(source, "insert into t values (1)");
    const started = Date.now();
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 1, stderr);
    assertMatch(stderr, /error: The apply stage kept failing for \d+ s: /);
    assertMatch(stderr, /hint: fix the cause/);
    assert(Date.now() - started < 40_000, `stopped after ${Date.now() - started} ms`);
  } finally {
    follow.kill("SIGKILL");
    await proxy.close();
    await cleanupStream(source, target, name);
  }
});
