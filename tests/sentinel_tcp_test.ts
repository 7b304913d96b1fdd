import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { readSentinel, setupSentinel } from "../lib/catalog/sentinel_store.ts";
import { Coordinator, type CoordinatorOptions } from "../lib/sentinel/coordinator.ts";
import { exchange, TcpSentinelTransport } from "../lib/sentinel/client.ts";
import { clientProof, newNonce } from "../lib/sentinel/auth.ts";
import { decodeMessage, encodeMessage, FrameReader } from "../lib/sentinel/codec.ts";
import type { SentinelMessage } from "../lib/sentinel/codec.ts";
import { OperatorError } from "../lib/errors.ts";
import { parseLsn } from "../lib/lsn.ts";
import { setLogLevel } from "../lib/log.ts";

setLogLevel("error"); // the coordinator logs every change; keep test output readable

async function serverCatalog(): Promise<Catalog> {
  const dir = await tempDir("coordinator");
  const catalog = await Catalog.open(dir, { create: true });
  await setupSentinel(catalog, parseLsn("0/1000"), 0n);
  return catalog;
}

function start(catalog: Catalog, extra: Partial<CoordinatorOptions> = {}): Coordinator {
  return Coordinator.start({ host: "127.0.0.1", port: 0, catalog, ...extra });
}

/** Sends raw bytes on a new connection, closes our side, returns every frame the server sent. */
async function raw(port: number, bytes: Uint8Array): Promise<SentinelMessage[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes).catch(() => 0);
    await conn.closeWrite().catch(() => {});
    const reader = new FrameReader();
    const out: SentinelMessage[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      out.push(...reader.push(buf.subarray(0, n)));
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

Deno.test("a client in another process with its own --dir steers the sentinel through the coordinator", async () => {
  using catalog = await serverCatalog();
  await using coordinator = start(catalog);
  const clientDir = await tempDir("client"); // empty: the client cannot fall back to a catalog
  const tcp = ["--dir", clientDir, "--host", "127.0.0.1", "--port", String(coordinator.port)];

  let run = await pgferry(["stream", "sentinel", "set", "endpos", "0/3000060", ...tcp]);
  assertEquals([run.code, run.stdout], [0, "0/3000060\n"], run.stderr);
  run = await pgferry(["stream", "sentinel", "set", "apply", ...tcp]);
  assertEquals(run.code, 0, run.stderr);
  const sentinel = readSentinel(catalog.db);
  assertEquals([sentinel.endpos, sentinel.apply], [0x3000060n, true]);

  // The TCP path prints exactly what the SQLite path prints.
  for (const extra of [[], ["--json"], ["--endpos"], ["--apply"], ["--startpos"]]) {
    const overTcp = await pgferry(["stream", "sentinel", "get", ...tcp, ...extra]);
    const overSqlite = await pgferry(["stream", "sentinel", "get", "--dir", catalog.dir, ...extra]);
    assertEquals(overTcp.code, 0, overTcp.stderr);
    assertEquals(overTcp.stdout, overSqlite.stdout);
  }
  run = await pgferry(["stream", "sentinel", "set", "prefetch", ...tcp]);
  assertEquals(run.code, 0, run.stderr);
  run = await pgferry(["stream", "sentinel", "set", "startpos", "0/2000", ...tcp]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(readSentinel(catalog.db).apply, false);
  assertEquals(readSentinel(catalog.db).startpos, 0x2000n);
  await assertNoCatalog(clientDir);
  const logged = catalog.db.prepare("select detail from command_log where command = ?").all(
    "sentinel set endpos",
  ) as { detail: string }[];
  assertStringIncludes(logged.at(-1)!.detail, "0/3000060 from 127.0.0.1:");
});

async function assertNoCatalog(dir: string) {
  const entries = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry.name);
  assertEquals(entries, []);
}

Deno.test("hostnames resolve: --host localhost reaches a coordinator on 127.0.0.1", async () => {
  using catalog = await serverCatalog();
  await using coordinator = start(catalog);
  const run = await pgferry([
    "stream",
    "sentinel",
    "get",
    "--startpos",
    "--host",
    "localhost",
    "--port",
    String(coordinator.port),
  ]);
  assertEquals([run.code, run.stdout], [0, "0/1000\n"], run.stderr);
});

Deno.test("an unreachable coordinator: exit 1, cannot reach, a hint, and no fallback to the catalog", async () => {
  using catalog = await serverCatalog();
  const port = freePort();
  const run = await pgferry([
    "stream",
    "sentinel",
    "get",
    "--dir",
    catalog.dir, // a catalog is right there, and must not be used
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
  ]);
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, `error: cannot reach the coordinator at "127.0.0.1:${port}": `);
  assertStringIncludes(run.stderr, "\nhint: ");
  assertEquals(run.stdout, "");
});

Deno.test("a coordinator that accepts but never answers: exit 1 after the deadline", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const started = Date.now();
    const run = await pgferry([
      "stream",
      "sentinel",
      "set",
      "apply",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
    ]);
    assertEquals(run.code, 1);
    assertStringIncludes(run.stderr, "cannot reach the coordinator");
    assertStringIncludes(run.stderr, "no answer within");
    assert(Date.now() - started < 15_000);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
});

Deno.test("ping --wait waits until the coordinator answers", async () => {
  using catalog = await serverCatalog();
  const port = freePort();
  const child = spawnPgferry([
    "stream",
    "sentinel",
    "ping",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--wait",
    "20",
  ]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await using _coordinator = start(catalog, { port });
  const output = await child.output();
  assertEquals(output.code, 0, output.stderr);
  assertEquals(output.stdout, "pong\n");
  const noWait = await pgferry([
    "stream",
    "sentinel",
    "ping",
    "--host",
    "127.0.0.1",
    "--port",
    String(freePort()),
  ]);
  assertEquals(noWait.code, 1);
});

Deno.test("200 concurrent clients doing mixed get/set all succeed, and the last acknowledged writes win", async () => {
  using catalog = await serverCatalog();
  // Each request is a connection of its own, and the server counts one until it has read the
  // client's close: room for more than the 200 open at once (the limit has its own test).
  await using coordinator = start(catalog, { maxConnections: 1024 });
  const endpoint = { host: "127.0.0.1", port: coordinator.port };
  const acked: { kind: string; value: string; order: number }[] = [];
  let order = 0;
  await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const transport = new TcpSentinelTransport(endpoint);
      for (let round = 0; round < 3; round++) {
        const which = (i + round) % 3;
        if (which === 0) {
          const s = await transport.get();
          assert(s.startpos === 0x1000n);
        } else if (which === 1) {
          const lsn = BigInt(i * 10 + round + 1);
          await transport.setEndpos(lsn, `client ${i}`);
          acked.push({ kind: "endpos", value: lsn.toString(16).toUpperCase(), order: order++ });
        } else {
          await transport.setApply(i % 2 === 0);
          acked.push({ kind: "apply", value: i % 2 === 0 ? "apply" : "prefetch", order: order++ });
        }
      }
    }),
  );
  // Every acknowledged write is in the catalog's log, and the sentinel holds the last one logged.
  const log = catalog.db.prepare("select command, detail from command_log order by id").all() as {
    command: string;
    detail: string;
  }[];
  const endposLog = log.filter((r) => r.command === "sentinel set endpos");
  const applyLog = log.filter((r) => r.command === "sentinel set apply");
  assertEquals(endposLog.length, acked.filter((a) => a.kind === "endpos").length);
  assertEquals(applyLog.length, acked.filter((a) => a.kind === "apply").length);
  const sentinel = readSentinel(catalog.db);
  assertEquals(
    `0/${sentinel.endpos.toString(16).toUpperCase()}`,
    endposLog.at(-1)!.detail.split(" ")[0],
  );
  assertEquals(sentinel.apply ? "apply" : "prefetch", applyLog.at(-1)!.detail.split(" ")[0]);
  assertEquals(acked.length, 400);
});

Deno.test("fuzz: 100,000 random and mutated frames into a live coordinator leave it answering and the sentinel unchanged", async () => {
  using catalog = await serverCatalog();
  await using coordinator = start(catalog, { readTimeoutMs: 2000, maxConnections: 64 });
  const before = readSentinel(catalog.db);
  let seed = 0x2545F491;
  const rand = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x1_0000_0000;
  };
  const valid: Uint8Array[] = [
    encodeMessage({ type: "Ping" }),
    encodeMessage({ type: "QuerySentinel" }),
    encodeMessage({ type: "QueryStatus" }),
    encodeMessage({ type: "SetEndpos", lsn: 0x42n, reason: "fuzz" }),
    encodeMessage({ type: "SetApply", apply: true }),
    encodeMessage({ type: "Error", message: "x" }),
  ];
  const writes = new Set(["SetEndpos", "SetStartpos", "SetApply", "Cleanup"]);
  function frame(): Uint8Array {
    for (;;) {
      let bytes: Uint8Array;
      if (rand() < 0.3) {
        bytes = crypto.getRandomValues(new Uint8Array(Math.floor(rand() * 40)));
        for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
      } else {
        bytes = valid[Math.floor(rand() * valid.length)]!.slice();
        const flips = 1 + Math.floor(rand() * 3);
        for (let f = 0; f < flips && bytes.length > 0; f++) {
          bytes[Math.floor(rand() * Math.min(bytes.length, 12))] = Math.floor(rand() * 256);
        }
        if (rand() < 0.2) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
      }
      // A mutation that yields a well-formed write request would legitimately change the
      // sentinel: leave those out, everything else must be refused or answered read-only.
      if (bytes.length >= 4 && bytes[0] === 1) {
        try {
          const len = (bytes[2]! << 8) | bytes[3]!;
          if (bytes.length >= 4 + len) {
            const msg = decodeMessage(bytes[1]!, bytes.subarray(4, 4 + len));
            if (writes.has(msg.type)) continue;
          }
        } catch { /* malformed: keep it */ }
      }
      return bytes;
    }
  }
  let frames = 0;
  const connections = 2000;
  const perConnection = 50;
  for (let c = 0; c < connections; c += 16) {
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        const parts: Uint8Array[] = [];
        for (let f = 0; f < perConnection; f++) parts.push(frame());
        frames += perConnection;
        const replies = await raw(coordinator.port, concat(parts));
        for (const reply of replies) {
          assert(
            ["Pong", "SentinelReply", "StatusReply", "Error"].includes(reply.type),
            `unexpected ${reply.type}`,
          );
        }
      }),
    );
  }
  assert(frames >= 100_000);
  const after = await new TcpSentinelTransport({ host: "127.0.0.1", port: coordinator.port }).get();
  assertEquals(after, before);
  assertEquals(readSentinel(catalog.db), before);
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

Deno.test("a silent or dribbling peer is cut off at the read deadline, and the coordinator carries on", async () => {
  using catalog = await serverCatalog();
  await using coordinator = start(catalog, { readTimeoutMs: 800 });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: coordinator.port });
  const dribbler = await Deno.connect({ hostname: "127.0.0.1", port: coordinator.port });
  const started = Date.now();
  const frame = encodeMessage({ type: "SetEndpos", lsn: 0x99n, reason: "slow" });
  let cutAfter = -1;
  for (let i = 0; i < frame.length; i++) {
    try {
      await dribbler.write(frame.subarray(i, i + 1));
    } catch {
      cutAfter = Date.now() - started;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (Date.now() - started > 5000) break;
  }
  const eof = await silent.read(new Uint8Array(16)).catch(() => null);
  assertEquals(eof, null);
  assert(cutAfter > 0 && cutAfter < 3000, `dribbler cut after ${cutAfter} ms`);
  silent.close();
  dribbler.close();
  await new TcpSentinelTransport({ host: "127.0.0.1", port: coordinator.port }).ping();
  assertEquals(readSentinel(catalog.db).endpos, 0n);
});

Deno.test("connections beyond the cap are refused with an ERROR, the others are served", async () => {
  using catalog = await serverCatalog();
  await using coordinator = start(catalog, { maxConnections: 4, readTimeoutMs: 3000 });
  const idle = await Promise.all(
    Array.from(
      { length: 4 },
      () => Deno.connect({ hostname: "127.0.0.1", port: coordinator.port }),
    ),
  );
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const refused = await raw(coordinator.port, encodeMessage({ type: "Ping" }));
    assertEquals(refused.map((m) => m.type), ["Error"]);
  } finally {
    for (const conn of idle) conn.close();
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  await new TcpSentinelTransport({ host: "127.0.0.1", port: coordinator.port }).ping();
});

Deno.test("auth: a non-loopback coordinator without a secret does not start", async () => {
  using catalog = await serverCatalog();
  const err = await assertRejects(
    () => Promise.resolve().then(() => start(catalog, { host: "0.0.0.0" })),
    OperatorError,
    "without a secret",
  );
  assertStringIncludes((err as OperatorError).hint!, "PGFERRY_SECRET");
  // --insecure is an explicit choice.
  await start(catalog, { host: "0.0.0.0", insecure: true }).close();
});

Deno.test("auth: no secret and a wrong secret are refused, the right one works, a replayed proof fails", async () => {
  using catalog = await serverCatalog();
  const secret = new TextEncoder().encode("correct horse battery staple");
  await using coordinator = start(catalog, { host: "0.0.0.0", secret });
  const port = String(coordinator.port);
  const tcp = ["--host", "127.0.0.1", "--port", port];

  let run = await pgferry(["stream", "sentinel", "set", "endpos", "0/77", ...tcp], {
    PGFERRY_SECRET: "",
  });
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, "Authentication required");
  run = await pgferry(["stream", "sentinel", "set", "endpos", "0/77", ...tcp], {
    PGFERRY_SECRET: "wrong",
  });
  assertEquals(run.code, 1);
  assertStringIncludes(run.stderr, "refused the secret");
  assertEquals(readSentinel(catalog.db).endpos, 0n);

  const secretFile = join(await tempDir("secret"), "secret");
  await Deno.writeTextFile(secretFile, "correct horse battery staple\n");
  run = await pgferry([
    "stream",
    "sentinel",
    "set",
    "endpos",
    "0/77",
    ...tcp,
    "--secret-file",
    secretFile,
  ]);
  assertEquals(run.code, 0, run.stderr);
  run = await pgferry(["stream", "sentinel", "get", "--endpos", ...tcp], {
    PGFERRY_SECRET: "correct horse battery staple",
  });
  assertEquals([run.code, run.stdout], [0, "0/77\n"], run.stderr);

  // Capture one good exchange, then replay the client's bytes on a new connection.
  const first = await Deno.connect({ hostname: "127.0.0.1", port: coordinator.port });
  const reader = new FrameReader();
  const buf = new Uint8Array(2048);
  const nextFrom = async (conn: Deno.Conn) => {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("closed");
      const [msg] = reader.push(buf.subarray(0, n));
      if (msg) return msg;
    }
  };
  await first.write(encodeMessage({ type: "AuthRequest" }));
  const challenge = await nextFrom(first);
  assert(challenge.type === "AuthChallenge");
  const clientNonce = newNonce();
  const response = encodeMessage({
    type: "AuthResponse",
    clientNonce,
    proof: await clientProof(secret, challenge.serverNonce, clientNonce),
  });
  const setEndpos = encodeMessage({ type: "SetEndpos", lsn: 0x88n, reason: "captured" });
  await first.write(response);
  assertEquals((await nextFrom(first)).type, "AuthOk");
  await first.write(setEndpos);
  assertEquals((await nextFrom(first)).type, "AckConfirmed");
  first.close();
  assertEquals(readSentinel(catalog.db).endpos, 0x88n);
  await catalog.write((db) => db.exec("update sentinel set endpos = '0/77'"));

  const replies = await raw(
    coordinator.port,
    concat([encodeMessage({ type: "AuthRequest" }), response, setEndpos]),
  );
  assertEquals(replies.map((m) => m.type), ["AuthChallenge", "Error"]);
  assertEquals(readSentinel(catalog.db).endpos, 0x77n);
  // A request without authenticating first is refused too.
  assertEquals((await raw(coordinator.port, setEndpos)).map((m) => m.type), ["Error"]);
  assertEquals(readSentinel(catalog.db).endpos, 0x77n);
});

Deno.test("TLS: a round trip with a certificate made at test time", async () => {
  const dir = await tempDir("tls");
  const [caKey, ca, key, csr, cert, ext] = [
    "ca.key",
    "ca.pem",
    "key.pem",
    "req.csr",
    "cert.pem",
    "ext",
  ]
    .map((name) => join(dir, name)) as [string, string, string, string, string, string];
  await Deno.writeTextFile(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  const steps = [
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=pgferry test CA",
      "-keyout",
      caKey,
      "-out",
      ca,
    ],
    ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca,
      "-CAkey",
      caKey,
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      ext,
      "-out",
      cert,
    ],
  ];
  for (const args of steps) {
    const openssl = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
      .output();
    assertEquals(openssl.code, 0, new TextDecoder().decode(openssl.stderr));
  }
  using catalog = await serverCatalog();
  await using coordinator = start(catalog, {
    tls: { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) },
  });
  const tcp = ["--host", "localhost", "--port", String(coordinator.port), "--tls-ca", ca];
  let run = await pgferry(["stream", "sentinel", "set", "endpos", "1/2", ...tcp]);
  assertEquals(run.code, 0, run.stderr);
  run = await pgferry(["stream", "sentinel", "get", "--endpos", ...tcp]);
  assertEquals([run.code, run.stdout], [0, "1/2\n"], run.stderr);
  // A plain-text client gets nothing it can use from a TLS server.
  run = await pgferry([
    "stream",
    "sentinel",
    "get",
    "--host",
    "localhost",
    "--port",
    String(coordinator.port),
  ]);
  assertEquals(run.code, 1);
  await assertRejects(
    () =>
      exchange({ host: "127.0.0.1", port: coordinator.port, timeoutMs: 2000 }, { type: "Ping" }),
    OperatorError,
  );
});
