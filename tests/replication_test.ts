/**
 * The replication protocol: the pure codec from hand-written byte fixtures, SCRAM
 * from the RFC 7677 test vector, and the connection against the real source
 * cluster (wal_level=logical) that scripts/test.sh starts. The test cluster
 * trusts 127.0.0.1, so password authentication is only checked offline here.
 */
import type postgres from "postgres";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "./helpers/assert.ts";
import { sourceUri, withDatabase } from "./helpers/env.ts";
import { withConnection } from "../lib/pg/connect.ts";
import { formatLsn, type Lsn, parseLsn } from "../lib/lsn.ts";
import {
  dateFromPgTime,
  encodeStandbyStatusUpdate,
  parseReplicationMessage,
  pgTimeFromDate,
  type ReplicationMessage,
} from "../lib/pg/replication_messages.ts";
import {
  md5PasswordResponse,
  parseConnectionString,
  PgConnectionError,
  PgError,
  ReplicationConnection,
  type ReplicationStream,
  ScramSha256,
} from "../lib/pg/replication.ts";
import { withSql } from "./helpers/tables.ts";
import { CopyConnection } from "../lib/pg/copy_connection.ts";
import { classifyPgError } from "../lib/pg/classify.ts";

// ---------------------------------------------------------------------------
// Codec

Deno.test("parseReplicationMessage() reads XLogData and returns its data as a view, not a copy", () => {
  const bytes = new Uint8Array([
    0x77, // 'w'
    ...[0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x67, 0x89], // walStart 1/23456789
    ...[0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x68, 0x00], // walEnd 1/23456800
    ...[0x00, 0x02, 0xb9, 0x4e, 0x1c, 0x4b, 0x9e, 0x40], // sendTime
    ...[0x42, 0x45, 0x47, 0x49, 0x4e], // "BEGIN"
  ]);
  const message = parseReplicationMessage(bytes);
  assert(message.tag === "XLogData");
  assertEquals(message.walStart, parseLsn("1/23456789"));
  assertEquals(message.walEnd, parseLsn("1/23456800"));
  assertEquals(message.sendTime, 0x0002_b94e_1c4b_9e40n);
  assertEquals(new TextDecoder().decode(message.data), "BEGIN");
  assert(message.data.buffer === bytes.buffer, "data shares the receive buffer");
  assertEquals(message.data.byteOffset, 25);
});

Deno.test("parseReplicationMessage() reads XLogData at an offset inside a larger buffer", () => {
  const frame = new Uint8Array(40);
  frame.set([0x77], 7);
  frame.set([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10], 8);
  frame[39] = 0x61; // "a"
  const message = parseReplicationMessage(frame.subarray(7, 40));
  assert(message.tag === "XLogData");
  assertEquals(message.walStart, 0x10n);
  assertEquals([...message.data], [0, 0, 0, 0, 0, 0, 0, 0x61]);
});

Deno.test("parseReplicationMessage() reads a PrimaryKeepalive and its reply flag", () => {
  const keepalive = (reply: number) =>
    new Uint8Array([
      0x6b, // 'k'
      ...[0x00, 0x00, 0x00, 0x16, 0xb3, 0x74, 0xd8, 0x48], // walEnd 16/B374D848
      ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // sendTime -1
      reply,
    ]);
  assertEquals(parseReplicationMessage(keepalive(1)), {
    tag: "PrimaryKeepalive",
    walEnd: parseLsn("16/B374D848"),
    sendTime: -1n,
    replyRequested: true,
  });
  const quiet = parseReplicationMessage(keepalive(0));
  assert(quiet.tag === "PrimaryKeepalive" && !quiet.replyRequested);
});

Deno.test("parseReplicationMessage() rejects short and unknown messages with a SyntaxError", () => {
  assertThrows(
    () => parseReplicationMessage(new Uint8Array([0x77, 0, 0])),
    SyntaxError,
    "XLogData",
  );
  assertThrows(
    () => parseReplicationMessage(new Uint8Array([0x6b, 0, 0, 0])),
    SyntaxError,
    "PrimaryKeepalive",
  );
  assertThrows(() => parseReplicationMessage(new Uint8Array([0x71])), SyntaxError, '"q" (0x71)');
  assertThrows(() => parseReplicationMessage(new Uint8Array(0)), SyntaxError, "empty");
});

Deno.test("encodeStandbyStatusUpdate() writes the 34-byte big-endian layout", () => {
  const bytes = encodeStandbyStatusUpdate({
    write: parseLsn("1/2"),
    flush: parseLsn("0/3000060"),
    apply: parseLsn("16/B374D848"),
    clock: 0x0102_0304_0506_0708n,
    replyRequested: true,
  });
  assertEquals([...bytes], [
    0x72, // 'r'
    ...[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02],
    ...[0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x60],
    ...[0x00, 0x00, 0x00, 0x16, 0xb3, 0x74, 0xd8, 0x48],
    ...[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
    0x01,
  ]);
  const quiet = encodeStandbyStatusUpdate({ write: 0n, flush: 0n, apply: 0n, clock: 0n });
  assertEquals(quiet.length, 34);
  assertEquals(quiet[33], 0);
});

Deno.test("encodeStandbyStatusUpdate() stamps the current time when no clock is given", () => {
  const before = pgTimeFromDate(new Date());
  const bytes = encodeStandbyStatusUpdate({ write: 0n, flush: 0n, apply: 0n });
  const clock = new DataView(bytes.buffer).getBigInt64(25);
  assert(clock >= before && clock < before + 5_000_000n, `clock ${clock} near ${before}`);
});

Deno.test("pgTimeFromDate() and dateFromPgTime() count microseconds from 2000-01-01 UTC", () => {
  assertEquals(pgTimeFromDate(new Date("2000-01-01T00:00:00Z")), 0n);
  assertEquals(pgTimeFromDate(new Date("2000-01-01T00:00:01.5Z")), 1_500_000n);
  assertEquals(dateFromPgTime(86_400_000_000n).toISOString(), "2000-01-02T00:00:00.000Z");
  assertEquals(dateFromPgTime(-1_000n).toISOString(), "1999-12-31T23:59:59.999Z");
});

// ---------------------------------------------------------------------------
// Authentication and connection strings (offline: the test cluster trusts 127.0.0.1)

Deno.test("ScramSha256 reproduces the RFC 7677 test vector", async () => {
  const scram = new ScramSha256("pencil", { user: "user", clientNonce: "rOprNGfwEbeRWgbNEkqO" });
  assertEquals(scram.clientFirstMessage(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  const serverFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  assertEquals(
    await scram.clientFinalMessage(serverFirst),
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," +
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
  );
  scram.verifyServerFinalMessage("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
});

Deno.test("ScramSha256 refuses a wrong server signature and a nonce it did not start", async () => {
  const scram = new ScramSha256("pencil", { clientNonce: "abc" });
  await scram.clientFinalMessage("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  const err = assertThrows(
    () => scram.verifyServerFinalMessage("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
    PgConnectionError,
    "signature",
  ) as PgConnectionError;
  assertEquals(err.code, "28000");
  await assertRejects(
    () => new ScramSha256("x", { clientNonce: "abc" }).clientFinalMessage("r=zzz,s=AA==,i=1"),
    PgConnectionError,
    "nonce",
  );
});

Deno.test("md5PasswordResponse() hashes password, user and salt the way PostgreSQL does", async () => {
  // python3: "md5" + md5(md5(b"secretpostgres").hexdigest().encode() + bytes([1, 2, 3, 4]))
  assertEquals(
    await md5PasswordResponse("postgres", "secret", new Uint8Array([1, 2, 3, 4])),
    "md5bb41a296aab6baccb36ff243a562abff",
  );
});

Deno.test("parseConnectionString() reads URIs and keyword/value strings", () => {
  const fromUri = parseConnectionString(
    "postgresql://al%40ice:p%2Fw@db.example:6543/my%20db?sslmode=disable&application_name=x&wal_sender_timeout=5s&target_session_attrs=any",
  );
  assertEquals(fromUri.host, "db.example");
  assertEquals(fromUri.port, 6543);
  assertEquals(fromUri.user, "al@ice");
  assertEquals(fromUri.password, "p/w");
  assertEquals(fromUri.database, "my db");
  assertEquals(fromUri.sslmode, "disable");
  assertEquals(fromUri.parameters, { application_name: "x", wal_sender_timeout: "5s" });

  const ipv6 = parseConnectionString("postgres://u@[::1]:5433/d");
  assertEquals([ipv6.host, ipv6.port], ["::1", 5433]);
  const socket = parseConnectionString("postgres://u@/d?host=/var/run/postgresql");
  assertEquals(socket.host, "/var/run/postgresql");

  const fromKeywords = parseConnectionString(
    "host=h port=5444 user=bob password='it\\'s x' dbname=app connect_timeout=3",
  );
  assertEquals(fromKeywords.host, "h");
  assertEquals(fromKeywords.port, 5444);
  assertEquals(fromKeywords.password, "it's x");
  assertEquals(fromKeywords.database, "app");
  assertEquals(fromKeywords.connectTimeoutMs, 3000);
});

Deno.test("parseConnectionString() errors never show the password", () => {
  for (
    const bad of [
      "postgres://u:hunter2@h:99999/d",
      "postgres://u:hunter2@h/d?sslmode=sometimes",
      "postgres://u:hun@ter2@h:0/d", // an unencoded "@" in the password
      "postgres://u:hunter2@h/d?hunter2",
      "postgres://u:hunter2%zz@h/d",
      "postgresql://u:hunter2@h1,h2/d",
      "host=h password=hunter2 port=x",
      "host=h password=hunter2 garbage",
    ]
  ) {
    const err = assertThrows(() => parseConnectionString(bad), SyntaxError);
    assert(!err.message.includes("hunter2") && !err.message.includes("ter2"), err.message);
  }
  assertEquals(parseConnectionString("postgres://u:hun@ter2@h/d").password, "hun@ter2");
});

// ---------------------------------------------------------------------------
// Against the source cluster

const hasCluster = Deno.env.get("PGFERRY_TEST_SOURCE_PGURI") !== undefined;
const DATABASE = `pgferry_replication_${crypto.randomUUID().slice(0, 8)}`;
let databaseReady: Promise<string> | undefined;

/** The URI of this file's own database, created on first use. */
function testUri(): Promise<string> {
  databaseReady ??= (async () => {
    await withSql(sourceUri(), (sql) => sql.unsafe(`create database "${DATABASE}"`));
    return withDatabase(sourceUri(), DATABASE);
  })();
  return databaseReady;
}

function uniqueSlot(what: string): string {
  return `t_${what}_${crypto.randomUUID().slice(0, 8)}`;
}

/** Drops a permanent slot once its walsender has let go of it. */
async function dropSlot(sql: postgres.Sql, slot: string): Promise<void> {
  for (let attempt = 0;; attempt++) {
    const [row] = await sql`
      select active from pg_replication_slots where slot_name = ${slot}`;
    if (row === undefined) return;
    if (!row.active || attempt > 100) {
      await sql`select pg_drop_replication_slot(${slot})`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Reads messages until `stop` returns true for one of them. */
async function readUntil(
  stream: ReplicationStream,
  stop: (message: ReplicationMessage) => boolean,
): Promise<ReplicationMessage[]> {
  const seen: ReplicationMessage[] = [];
  for await (const message of stream) {
    seen.push(message);
    if (stop(message)) break;
  }
  return seen;
}

/** The rejection of `promise`, handled from the start so it never counts as unhandled. */
function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => new Error("Expected a rejection"), (err: unknown) => err);
}

const text = (message: ReplicationMessage) =>
  message.tag === "XLogData" ? new TextDecoder().decode(message.data) : "";

const clusterTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !hasCluster, fn });

clusterTest(
  "ReplicationConnection.connect() to a closed port fails with 08001, password masked",
  async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const err = await assertRejects(
      () =>
        ReplicationConnection.connect(
          `postgres://bob:hunter2@127.0.0.1:${port}/db?sslmode=disable`,
        ),
      PgConnectionError,
      `Cannot connect to "127.0.0.1:${port}" as "bob"`,
    ) as PgConnectionError;
    assertEquals(err.code, "08001");
    assert(!err.message.includes("hunter2"), err.message);
  },
);

clusterTest(
  "postgres.js connections take sslrootcert and the other client-file parameters out of the URI (the server refuses them as settings)",
  async () => {
    const uri = new URL(sourceUri());
    uri.searchParams.set("sslmode", "disable");
    uri.searchParams.set("sslrootcert", "/nonexistent/ca.crt");
    uri.searchParams.set("sslkey", "/nonexistent/client.key");
    const rows = await withConnection(uri.href, "source", (sql) => sql`select 1 as one`);
    assertEquals(rows[0]?.["one"], 1);
  },
);

Deno.test("a connection closed before it answers the TLS request is lost, and retried, for both connection kinds", async () => {
  // What a proxy or a restarting server does: accept, read the SSLRequest, close.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const server = (async () => {
    for await (const conn of listener) {
      await conn.read(new Uint8Array(8)).catch(() => null);
      conn.close();
    }
  })();
  try {
    const uri = `postgres://bob@127.0.0.1:${port}/db?sslmode=prefer`;
    for (
      const connect of [
        () => ReplicationConnection.connect(uri),
        () => CopyConnection.connect(uri, { role: "source" }),
      ]
    ) {
      const err = await assertRejects(
        connect,
        PgConnectionError,
        "closed before answering the TLS request",
      );
      assertEquals((err as PgConnectionError).code, "08006");
      assertEquals(classifyPgError(err), "retryable");
    }
  } finally {
    listener.close();
    await server.catch(() => {});
  }
});

clusterTest("ReplicationConnection.connect() reports a missing database as a PgError", async () => {
  const uri = withDatabase(sourceUri(), "no_such_database_here");
  const err = await assertRejects(
    () => ReplicationConnection.connect(uri),
    PgError,
    'database "no_such_database_here" does not exist',
  ) as PgError;
  assertEquals([err.code, err.severity], ["3D000", "FATAL"]);
});

clusterTest("identifySystem() names the database and the current WAL position", async () => {
  const uri = await testUri();
  await using conn = await ReplicationConnection.connect(uri);
  const system = await conn.identifySystem();
  assertEquals(system.dbname, DATABASE);
  assertEquals(system.timeline, 1);
  assertMatch(system.systemId, /^\d+$/);
  const current = await withSql(uri, async (sql) => {
    const [row] = await sql`select pg_current_wal_flush_lsn()::text as lsn`;
    return parseLsn(row!.lsn);
  });
  assert(system.xlogpos > 0n && system.xlogpos <= current);
  assertMatch(conn.serverVersion, /^\d+/);
  assert(conn.processId > 0);
});

for (const plugin of ["pgoutput", "test_decoding"]) {
  clusterTest(
    `createLogicalSlot() for ${plugin} exports a snapshot another connection can use`,
    async () => {
      const uri = await testUri();
      const slot = uniqueSlot(plugin);
      const table = `snap_${plugin}`;
      await withSql(uri, async (sql) => {
        await sql.unsafe(`create table ${table} (id int primary key)`);
        await sql.unsafe(`insert into ${table} select generate_series(1, 3)`);
        try {
          await using conn = await ReplicationConnection.connect(uri);
          const created = await conn.createLogicalSlot(slot, plugin, { exportSnapshot: true });
          assertEquals(created.slotName, slot);
          assertEquals(created.plugin, plugin);
          assertMatch(created.snapshotName ?? "", /^[0-9A-F]+-[0-9A-F]+-\d+$/);
          await sql.unsafe(`insert into ${table} values (4), (5)`);

          // The replication connection stays open and idle while the clone reads.
          const inSnapshot = await sql.begin(async (tx) => {
            await tx.unsafe("set transaction isolation level repeatable read, read only");
            await tx.unsafe(`set transaction snapshot '${created.snapshotName}'`);
            const [row] = await tx.unsafe(`select count(*)::int as n from ${table}`);
            return row!.n as number;
          });
          assertEquals(inSnapshot, 3);
          const [now] = await sql.unsafe(`select count(*)::int as n from ${table}`);
          assertEquals(now!.n, 5);

          const [row] = await sql`
          select plugin, confirmed_flush_lsn::text as lsn
          from pg_replication_slots where slot_name = ${slot}`;
          assertEquals(row!.plugin, plugin);
          assertEquals(parseLsn(row!.lsn), created.consistentPoint);
        } finally {
          await dropSlot(sql, slot);
        }
      });
    },
  );
}

clusterTest("startLogical() streams 10,000 inserted rows through test_decoding", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("stream");
  await withSql(uri, async (sql) => {
    await sql`create table stream_rows (id int primary key, note text)`;
    await using conn = await ReplicationConnection.connect(uri);
    await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
    await sql`insert into stream_rows select g, 'row ' || g from generate_series(1, 4000) g`;
    await sql`insert into stream_rows select g, E'it''s\n' || g from generate_series(4001, 10000) g`;

    const stream = await conn.startLogical(slot, 0n, {
      pluginOptions: { "include-xids": "off", "skip-empty-xacts": "on" },
    });
    let rows = 0;
    let commits = 0;
    let lastStart: Lsn = 0n;
    for await (const message of stream) {
      if (message.tag !== "XLogData") continue;
      // BEGIN comes with walStart 0/0; every other message moves forward.
      if (message.walStart !== 0n) {
        assert(message.walStart >= lastStart, "walStart never goes back");
        lastStart = message.walStart;
      }
      const line = text(message);
      if (line.startsWith("table public.stream_rows: INSERT:")) rows++;
      if (line === "COMMIT" && ++commits === 2) break;
    }
    assertEquals(rows, 10_000);
    await stream.stop();
  });
});

clusterTest("sendStatus() moves the slot's confirmed_flush_lsn", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("status");
  await withSql(uri, async (sql) => {
    try {
      await using conn = await ReplicationConnection.connect(uri);
      const created = await conn.createLogicalSlot(slot, "test_decoding");
      await sql`create table status_rows (id int)`;
      await sql`insert into status_rows values (1)`;
      const stream = await conn.startLogical(slot, 0n);
      const seen = await readUntil(stream, (m) => text(m).startsWith("COMMIT"));
      const commit = seen.at(-1);
      assert(commit?.tag === "XLogData");
      const commitEnd = commit.walStart; // for COMMIT: the end of the commit record
      assert(commitEnd > created.consistentPoint);

      await stream.sendStatus({
        write: commitEnd,
        flush: commitEnd,
        apply: 0n,
        replyRequested: true,
      });
      let confirmed: Lsn = 0n;
      for (let i = 0; i < 100 && confirmed !== commitEnd; i++) {
        const [row] = await sql`
          select confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = ${slot}`;
        confirmed = parseLsn(row!.lsn);
        if (confirmed !== commitEnd) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assertEquals(formatLsn(confirmed), formatLsn(commitEnd));
      assertEquals(conn.lastStatus.flush, commitEnd);
    } finally {
      await dropSlot(sql, slot);
    }
  });
});

clusterTest(
  "keepalives that request a reply are answered, so the server keeps the connection",
  async () => {
    const uri = await testUri();
    const slot = uniqueSlot("alive");
    // wal_sender_timeout is user-settable: the server asks for a reply after 500 ms of silence.
    await using conn = await ReplicationConnection.connect(uri, {
      parameters: { wal_sender_timeout: "1s" },
    });
    await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
    const stream = await conn.startLogical(slot, 0n);
    const started = Date.now();
    let requests = 0;
    for await (const message of stream) {
      if (message.tag === "PrimaryKeepalive" && message.replyRequested) requests++;
      if (Date.now() - started > 3_000) break;
    }
    assert(requests >= 2, `${requests} keepalives asked for a reply`);
    await stream.stop();
    assertEquals((await conn.identifySystem()).dbname, DATABASE);
  },
);

clusterTest("without replies the server times the connection out: code 08006", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("timeout");
  await using conn = await ReplicationConnection.connect(uri, {
    parameters: { wal_sender_timeout: "1s" },
  });
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  const stream = await conn.startLogical(slot, 0n, { autoReply: false });
  const err = await assertRejects(
    () => readUntil(stream, () => false),
    PgConnectionError,
    "Lost the replication connection",
  ) as PgConnectionError;
  assertEquals(err.code, "08006");
  await assertRejects(() => conn.identifySystem(), PgConnectionError);
});

clusterTest(
  "startLogical() from a given LSN skips transactions that committed before it",
  async () => {
    const uri = await testUri();
    const slot = uniqueSlot("from");
    await withSql(uri, async (sql) => {
      await sql`create table from_rows (id int)`;
      await using conn = await ReplicationConnection.connect(uri);
      await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
      await sql`insert into from_rows values (1), (2)`;
      const [row] = await sql`select pg_current_wal_lsn()::text as lsn`;
      const startpos = parseLsn(row!.lsn);
      await sql`insert into from_rows values (3)`;

      const stream = await conn.startLogical(slot, startpos);
      const seen = await readUntil(stream, (m) => text(m).startsWith("COMMIT"));
      const inserts = seen.map(text).filter((line) => line.includes("INSERT"));
      assertEquals(inserts, ["table public.from_rows: INSERT: id[integer]:3"]);
      for (const message of seen) {
        if (message.tag === "XLogData" && message.walStart !== 0n) {
          assert(message.walStart >= startpos);
        }
      }
    });
  },
);

clusterTest("startLogical() on a missing slot fails with an error naming the slot", async () => {
  const uri = await testUri();
  await using conn = await ReplicationConnection.connect(uri);
  const err = await assertRejects(
    () => conn.startLogical("no_such_slot", parseLsn("0/16B3748")),
    PgError,
    'Cannot start replication from "0/16B3748" on slot "no_such_slot": replication slot "no_such_slot" does not exist',
  ) as PgError;
  assertEquals([err.code, err.severity], ["42704", "ERROR"]);
  // An ERROR leaves the connection usable.
  assertEquals((await conn.identifySystem()).dbname, DATABASE);
});

clusterTest(
  "query() errors carry SQLSTATE, detail and hint with a sentence-case message",
  async () => {
    const uri = await testUri();
    await using conn = await ReplicationConnection.connect(uri);
    const err = await assertRejects(
      () => conn.query("select 1/0"),
      PgError,
      "Division by zero",
    ) as PgError;
    assertEquals(err.code, "22012");
    const raised = await assertRejects(
      () =>
        conn.query(
          "do $$ begin raise exception 'boom' using detail = 'the detail', hint = 'the hint', errcode = 'P0042'; end $$",
        ),
      PgError,
      "Boom",
    ) as PgError;
    assertEquals([raised.code, raised.detail, raised.hint], ["P0042", "the detail", "the hint"]);
    assertEquals((await conn.query("select 1 as one, null as nothing")).rows, [["1", null]]);
  },
);

clusterTest("a walsender terminated by the server surfaces as PgError 57P01", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("kill");
  await using conn = await ReplicationConnection.connect(uri);
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  const stream = await conn.startLogical(slot, 0n);
  const reading = failureOf(readUntil(stream, () => false));
  await withSql(uri, (sql) => sql`select pg_terminate_backend(${conn.processId})`);
  const err = await reading;
  assert(err instanceof PgError, String(err));
  assertMatch(err.message, /^Terminating connection due to administrator command/);
  assertEquals([err.code, err.severity], ["57P01", "FATAL"]);
});

clusterTest("aborting the signal ends a waiting stream with the abort reason", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("abort");
  const controller = new AbortController();
  await using conn = await ReplicationConnection.connect(uri, { signal: controller.signal });
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  const stream = await conn.startLogical(slot, 0n);
  const reading = failureOf(readUntil(stream, () => false));
  setTimeout(() => controller.abort(new RangeError("stop now")), 100);
  assertEquals(await reading, new RangeError("stop now"));
  await assertRejects(() => conn.identifySystem(), RangeError, "stop now");
});

clusterTest("stop() ends streaming and the connection runs commands again", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("stop");
  await using conn = await ReplicationConnection.connect(uri);
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  await withSql(uri, (sql) => sql`select pg_logical_emit_message(true, 'p', 'hello')`);
  const stream = await conn.startLogical(slot, 0n);
  await readUntil(stream, (m) => text(m).includes("hello"));
  await assertRejects(() => conn.query("select 1"), TypeError, "streaming");
  await stream.stop();
  assertEquals((await conn.query("select 2 as two")).rows, [["2"]]);
  const again = await conn.startLogical(slot, 0n);
  await again.stop();
});

clusterTest("stop() while a next() is waiting ends that loop without an error", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("stopwait");
  await using conn = await ReplicationConnection.connect(uri);
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  const stream = await conn.startLogical(slot, 0n);
  const reading = readUntil(stream, () => false);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await assertRejects(() => stream.next(), TypeError, "twice at once");
  await stream.stop();
  await reading;
  assertEquals((await conn.identifySystem()).dbname, DATABASE);
});

clusterTest("close() while a next() is waiting ends that loop without an error", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("closewait");
  const conn = await ReplicationConnection.connect(uri);
  await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
  const stream = await conn.startLogical(slot, 0n);
  const reading = readUntil(stream, () => false);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await conn.close();
  await reading;
  await assertRejects(() => conn.identifySystem(), PgConnectionError, "closed");
});

clusterTest("a consumer that stops reading stops the server, and nothing is lost", async () => {
  const uri = await testUri();
  const slot = uniqueSlot("slow");
  await withSql(uri, async (sql) => {
    await sql`create table slow_rows (id int, filler text)`;
    await using conn = await ReplicationConnection.connect(uri);
    await conn.createLogicalSlot(slot, "test_decoding", { temporary: true });
    await sql`insert into slow_rows select g, repeat('x', 200) from generate_series(1, 100000) g`;
    const [end] = await sql`select pg_current_wal_lsn()::text as lsn`;
    const stream = await conn.startLogical(slot, 0n);
    const first = await stream.next();
    assert(!first.done);

    // Not reading: TCP flow control must hold the walsender back, far from the end of WAL.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const [sent] = await sql`
      select sent_lsn::text as lsn from pg_stat_replication where pid = ${conn.processId}`;
    assert(
      parseLsn(sent!.lsn) < parseLsn(end!.lsn),
      `sent ${sent!.lsn} while the insert ends at ${end!.lsn}`,
    );

    let rows = 0;
    for await (const message of stream) {
      if (text(message).startsWith("table public.slow_rows: INSERT:")) rows++;
      if (text(message).startsWith("COMMIT")) break;
    }
    assertEquals(rows, 100_000);
  });
});

clusterTest("cleanup: drop this file's slots and database", async () => {
  if (databaseReady === undefined) return;
  await withSql(sourceUri(), async (sql) => {
    const slots = await sql`
      select slot_name from pg_replication_slots where database = ${DATABASE}`;
    for (const { slot_name } of slots) await dropSlot(sql, slot_name);
    await sql.unsafe(`drop database if exists "${DATABASE}" with (force)`);
  });
});
