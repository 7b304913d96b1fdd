/**
 * `--metrics-port` and the apply watchdog, on real clusters and processes:
 * /metrics parsed strictly while a write load flows, its counters checked
 * against the rows the source holds; a target table locked by the test shows
 * up as a stall in `pgferry status` and /metrics, and apply catches up when
 * the lock is released.
 */
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, type Spawned, spawnPgferry } from "./helpers/pgferry.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import { parseLsn } from "../lib/lsn.ts";
import { cleanupStream, psql, setEndposCurrent, streamArgs, waitFor } from "./helpers/pg.ts";

const SCHEMA = `
create table acc (id integer primary key, v bigint not null);
create table hist (id bigserial primary key, acc integer, delta integer);
`;

const WORKLOAD = `
\\set id random(1, 200)
\\set d random(-5, 5)
begin;
insert into acc (id, v) values (:id, :d) on conflict (id) do update set v = acc.v + excluded.v;
insert into hist (acc, delta) values (:id, :d);
commit;
`;

/** Kills a follow that is still running and waits for it. */
async function stop(follow: Spawned): Promise<void> {
  follow.kill("SIGKILL");
  await follow.output().catch(() => {}); // its output was read already when it exited in the test
}

async function count(uri: string, sql: string): Promise<number> {
  return await withSql(uri, async (db) => Number((await db.unsafe(sql))[0]!["n"]));
}

/** One sample of the text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A scrape: the families' types and every sample. */
interface Scrape {
  types: Map<string, string>;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_VALUE = String.raw`"(?:[^"\\\n]|\\[\\"n])*"`;
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*=${LABEL_VALUE}`;
const VALUE = String.raw`[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)`;
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? (${VALUE})$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

/**
 * Parses the Prometheus text format strictly: every line a `# HELP`, a
 * `# TYPE` or a sample of a family whose TYPE came first; one TYPE per
 * family; a final newline; no empty lines.
 */
function parseExposition(text: string): Scrape {
  assert(text.endsWith("\n"), "the exposition ends with a newline");
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("#")) {
      const type = TYPE.exec(line);
      if (type) {
        assert(!types.has(type[1]!), `a second TYPE for ${type[1]}`);
        types.set(type[1]!, type[2]!);
        continue;
      }
      assert(HELP.test(line), `not a HELP or TYPE line: ${JSON.stringify(line)}`);
      continue;
    }
    const match = SAMPLE.exec(line);
    assert(match, `not a sample line: ${JSON.stringify(line)}`);
    const name = match[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    assert(types.has(family), `sample ${name} before its TYPE`);
    if (family !== name) assertEquals(types.get(family), "histogram", line);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(new RegExp(`(\\w+)=(${LABEL_VALUE})`, "g"))) {
      labels[pair[1]!] = JSON.parse(pair[2]!.replaceAll("\\n", "\n"));
    }
    samples.push({ name, labels, value: Number(match[3]!.replace("Inf", "Infinity")) });
  }
  return { types, samples };
}

async function scrape(port: number): Promise<Scrape> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assertEquals(response.status, 200);
  assertStringIncludes(response.headers.get("content-type") ?? "", "text/plain; version=0.0.4");
  return parseExposition(await response.text());
}

/** The value of the sample with this name and these labels (among others), if any. */
function value(
  scrape: Scrape,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return scrape.samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

const FAMILIES = {
  pgferry_write_lsn: "gauge",
  pgferry_flush_lsn: "gauge",
  pgferry_replay_lsn: "gauge",
  pgferry_endpos_lsn: "gauge",
  pgferry_source_current_lsn: "gauge",
  pgferry_receive_lag_bytes: "gauge",
  pgferry_apply_lag_bytes: "gauge",
  pgferry_apply_lag_seconds: "gauge",
  pgferry_rows_applied_total: "counter",
  pgferry_transactions_applied_total: "counter",
  pgferry_apply_latency_seconds: "histogram",
  pgferry_spool_bytes: "gauge",
  pgferry_spool_files: "gauge",
  pgferry_coordinator_requests_total: "counter",
  pgferry_stage_restarts_total: "counter",
  pgferry_errors_total: "counter",
  pgferry_apply_stalled: "gauge",
};

Deno.test("/metrics under a write load: strict text format, the listed series present, applied rows and replay_lsn moving, 404 elsewhere", async () => {
  const name = "metrics_live";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const script = `${dir}.pgbench`;
  await Deno.writeTextFile(script, WORKLOAD);
  const metricsPort = freePort();
  const port = freePort();
  const follow = spawnPgferry([
    "follow",
    ...streamArgs(source, target, dir, name),
    "--port",
    String(port),
    "--metrics-port",
    String(metricsPort),
  ]);
  const tcp = ["--host", "127.0.0.1", "--port", String(port)];
  try {
    assertEquals((await pgferry(["stream", "sentinel", "ping", ...tcp, "--wait", "30"])).code, 0);
    const load = new Deno.Command("/usr/lib/postgresql/15/bin/pgbench", {
      args: ["-n", "-c", "2", "-R", "100", "-T", "8", "-f", script, source],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const scrapes: Scrape[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      scrapes.push(await scrape(metricsPort));
    }
    const loaded = await load.output();
    assertEquals(loaded.code, 0, new TextDecoder().decode(loaded.stderr));

    const first = scrapes[0]!;
    const last = scrapes.at(-1)!;
    for (const [family, type] of Object.entries(FAMILIES)) {
      assertEquals(last.types.get(family), type, `family ${family}`);
    }
    for (
      const series of [
        "pgferry_write_lsn",
        "pgferry_flush_lsn",
        "pgferry_replay_lsn",
        "pgferry_endpos_lsn",
        "pgferry_source_current_lsn",
        "pgferry_receive_lag_bytes",
        "pgferry_apply_lag_bytes",
        "pgferry_apply_lag_seconds",
        "pgferry_transactions_applied_total",
        "pgferry_apply_latency_seconds_count",
        "pgferry_spool_bytes",
        "pgferry_spool_files",
        "pgferry_apply_stalled",
      ]
    ) {
      assert(value(last, series) !== undefined, `no sample of ${series}`);
    }
    assertEquals(value(last, "pgferry_apply_stalled"), 0);
    assertEquals(value(last, "pgferry_endpos_lsn"), 0);
    assertEquals(value(last, "pgferry_stage_restarts_total", { stage: "apply" }), 0);
    assertEquals(value(last, "pgferry_stage_restarts_total", { stage: "receive" }), 0);
    assert(value(last, "pgferry_spool_files")! >= 1);
    assert(
      value(last, "pgferry_coordinator_requests_total", { type: "ping", result: "ok" })! >= 1,
      "the ping above is counted",
    );
    const rows = (s: Scrape) =>
      value(s, "pgferry_rows_applied_total", { table: "public.hist", operation: "insert" }) ?? 0;
    assert(rows(last) > rows(first), `applied rows move: ${rows(first)} → ${rows(last)}`);
    assert(
      value(last, "pgferry_replay_lsn")! > value(first, "pgferry_replay_lsn")!,
      "replay_lsn moves",
    );
    const buckets = last.samples.filter((s) => s.name === "pgferry_apply_latency_seconds_bucket");
    assertEquals(buckets.at(-1)!.labels["le"], "+Inf");
    assertEquals(buckets.at(-1)!.value, value(last, "pgferry_apply_latency_seconds_count"));
    for (let i = 1; i < buckets.length; i++) {
      assert(buckets[i]!.value >= buckets[i - 1]!.value, "buckets are cumulative");
    }

    // Once apply has caught up, the counters match what the source holds.
    const flushed = await withSql(
      source,
      async (sql) =>
        parseLsn((await sql`select pg_current_wal_flush_lsn()::text as l`)[0]!["l"] as string),
    );
    const transactions = await count(source, "select count(*) as n from hist");
    assert(transactions > 100, `the load committed ${transactions} transactions`);
    // Positions and counters are posted about once a second: wait for both to settle.
    let caught = last;
    await waitFor("apply catches up", async () => {
      caught = await scrape(metricsPort);
      return BigInt(value(caught, "pgferry_replay_lsn")!) >= flushed &&
        rows(caught) === transactions && value(caught, "pgferry_apply_lag_bytes") === 0;
    });
    const acc = (operation: string) =>
      value(caught, "pgferry_rows_applied_total", { table: "public.acc", operation }) ?? 0;
    assertEquals(acc("insert") + acc("update"), transactions, "one upsert per transaction");
    assertEquals(acc("insert"), await count(source, "select count(*) as n from acc"));
    assertEquals(value(caught, "pgferry_transactions_applied_total"), transactions);
    assertEquals(value(caught, "pgferry_apply_lag_bytes"), 0);
    assertEquals(value(caught, "pgferry_apply_lag_seconds"), 0);

    const elsewhere = await fetch(`http://127.0.0.1:${metricsPort}/`);
    assertEquals(elsewhere.status, 404);
    await elsewhere.body?.cancel();
    const other = await fetch(`http://127.0.0.1:${metricsPort}/metrics/x`);
    assertEquals(other.status, 404);
    await other.body?.cancel();

    const set = await pgferry([
      "stream",
      "sentinel",
      "set",
      "endpos",
      "--current",
      "--source",
      source,
      ...tcp,
    ]);
    assertEquals(set.code, 0, set.stderr);
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 0, stderr);
  } finally {
    await stop(follow);
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
});

Deno.test("a target table locked by another session: status and /metrics show apply stalled within the stall timeout, apply catches up once the lock is released", async () => {
  const name = "metrics_stall";
  const { source, target } = await freshDatabases(name);
  await psql(source, SCHEMA);
  await psql(target, SCHEMA);
  const dir = await tempDir(name);
  const metricsPort = freePort();
  const follow = spawnPgferry([
    "follow",
    ...streamArgs(source, target, dir, name),
    "--metrics-port",
    String(metricsPort),
    "--stall-timeout",
    "2",
  ]);
  // deno-lint-ignore no-explicit-any
  const status = async (): Promise<any> => {
    const run = await pgferry(["status", "--json", "--dir", dir]);
    assertEquals(run.code, 0, run.stderr);
    return JSON.parse(run.stdout);
  };
  let writing = true;
  let writer: Promise<void> | undefined;
  let release: () => void = () => {};
  let locker: Promise<unknown> | undefined;
  try {
    await waitFor("follow runs", async () => {
      const run = await pgferry(["status", "--json", "--dir", dir]);
      return run.code === 0 && JSON.parse(run.stdout).state === "running";
    });
    await psql(source, "insert into hist (acc, delta) select g, 1 from generate_series(1, 100) g");
    await waitFor(
      "the first rows are applied",
      async () => (await count(target, "select count(*) as n from hist")) === 100,
    );
    assertEquals((await status()).stalled, false);

    // The test's session holds the lock until released; writes keep flowing meanwhile.
    let locked: () => void = () => {};
    const isLocked = new Promise<void>((resolve) => locked = resolve);
    locker = withSql(target, (sql) =>
      sql.begin(async (tx) => {
        await tx`lock table hist in access exclusive mode`;
        locked();
        await new Promise<void>((resolve) => release = resolve);
      }));
    await isLocked;
    writer = withSql(source, async (sql) => {
      while (writing) {
        await sql`insert into hist (acc, delta) values (1, 1)`;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
    // A restarted apply may still move replay_lsn past a keepalive before it blocks again,
    // which ends that stall until the next one: each view is waited for on its own.
    const lockedAt = Date.now();
    let stalled;
    await waitFor("status shows the stall", async () => {
      stalled = await status();
      return stalled.stalled === true;
    }, 15_000);
    assert(stalled!.stall.restarts >= 1, JSON.stringify(stalled!.stall));
    assertEquals(stalled!.stall.timeout_seconds, 2);
    assert(parseLsn(stalled!.stall.replay_lsn) <= parseLsn(stalled!.sentinel.write_lsn));
    await waitFor(
      "status text shows the stall",
      async () => (await pgferry(["status", "--dir", dir])).stdout.includes("STALLED"),
      15_000,
    );
    let during: Scrape | undefined;
    await waitFor("/metrics shows the stall", async () => {
      during = await scrape(metricsPort);
      return value(during, "pgferry_apply_stalled") === 1;
    }, 15_000);
    const seen = Date.now() - lockedAt;
    assert(seen < 15_000, `the stall showed after ${seen} ms`);
    assert(value(during!, "pgferry_stage_restarts_total", { stage: "apply" })! >= 1);
    assert(value(during!, "pgferry_apply_lag_bytes")! > 0);
    assertStringIncludes(follow.stderrSoFar, "apply is stalled");

    // Released: apply moves on by itself, and the stall is over.
    release();
    await locker;
    await waitFor("the stall ends", async () => (await status()).stalled === false, 30_000);
    assertEquals(value(await scrape(metricsPort), "pgferry_apply_stalled"), 0);
    writing = false;
    await writer;
    const set = await setEndposCurrent(source, dir);
    assertEquals(set.code, 0, set.stderr);
    const { code, stderr } = await follow.exit(60_000);
    assertEquals(code, 0, stderr);
    const replay = await pgferry(["stream", "sentinel", "get", "--dir", dir, "--replay-lsn"]);
    assertEquals(replay.stdout, set.stdout, "replay_lsn is exactly endpos");
  } finally {
    writing = false;
    release();
    await Promise.allSettled([writer, locker]);
    await stop(follow);
    await cleanupStream(source, target, name);
  }
  await assertSameData(source, target, ["public"]);
  assert((await count(target, "select count(*) as n from hist")) > 100);
});
