import { assert, assertEquals } from "./helpers/assert.ts";
import { tempDir } from "./helpers/env.ts";
import { spawnPgferry } from "./helpers/pgferry.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { setupSentinel, updateSentinel } from "../lib/catalog/sentinel_store.ts";
import { Coordinator } from "../lib/sentinel/coordinator.ts";
import { TcpSentinelTransport } from "../lib/sentinel/client.ts";
import { encodeMessage } from "../lib/sentinel/codec.ts";
import { setLogLevel } from "../lib/log.ts";

setLogLevel("error");

async function serverCatalog(): Promise<Catalog> {
  const catalog = await Catalog.open(await tempDir("watch"), { create: true });
  await setupSentinel(catalog, 0x100n, 0n);
  return catalog;
}

Deno.test("watch --until-endpos prints each change and exits 0 when replay_lsn reaches endpos", async () => {
  using catalog = await serverCatalog();
  await using coordinator = Coordinator.start({ host: "127.0.0.1", port: 0, catalog });
  const child = spawnPgferry([
    "stream",
    "sentinel",
    "watch",
    "--host",
    "127.0.0.1",
    "--port",
    String(coordinator.port),
    "--until-endpos",
    "--json",
  ]);
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await pause(1500);
  await updateSentinel(catalog, { endpos: 0x5000n, replayLsn: 0x1000n });
  await pause(600);
  await updateSentinel(catalog, { replayLsn: 0x4FFFn });
  await pause(600);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  await pause(300);
  assert(!exited, "watch must not exit before replay_lsn reaches endpos");
  await updateSentinel(catalog, { replayLsn: 0x5000n });
  const output = await child.output();
  await status;
  assertEquals(output.code, 0, output.stderr);
  const lines = output.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(lines[0].replay_lsn, "0/0");
  assertEquals(lines.at(-1).replay_lsn, "0/5000");
  assert(lines.some((l) => l.replay_lsn === "0/4FFF"), JSON.stringify(lines));
});

Deno.test("a watch subscriber that stops reading is dropped without slowing sentinel writes", async () => {
  using catalog = await serverCatalog();
  await using coordinator = Coordinator.start({
    host: "127.0.0.1",
    port: 0,
    catalog,
    watchPingMs: 500,
    watchQueueLimit: 16,
  });
  const timeWrites = async (n: number) => {
    const started = performance.now();
    for (let i = 0; i < n; i++) await updateSentinel(catalog, { replayLsn: BigInt(i + 1) });
    return performance.now() - started;
  };
  const baseline = await timeWrites(300);
  // A subscriber that sends WATCH and then never reads nor answers.
  const stalled = await Deno.connect({ hostname: "127.0.0.1", port: coordinator.port });
  await stalled.write(encodeMessage({ type: "Watch" }));
  const started = performance.now();
  const during = await timeWrites(300);
  // Dropped within 3 pings of silence.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const buf = new Uint8Array(1 << 16);
  let closed = false;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const n = await stalled.read(buf).catch(() => null);
    if (n === null) {
      closed = true;
      break;
    }
  }
  stalled.close();
  assert(closed, "the stalled subscriber was not disconnected");
  assert(performance.now() - started < 8000);
  assert(
    during < baseline * 3 + 200,
    `writes took ${during} ms with a stalled subscriber, ${baseline} ms without`,
  );
  console.log(
    `300 sentinel writes: ${baseline.toFixed(0)} ms alone, ${
      during.toFixed(0)
    } ms with a stalled subscriber`,
  );
  await new TcpSentinelTransport({ host: "127.0.0.1", port: coordinator.port }).ping();
});
