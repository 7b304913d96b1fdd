/**
 * Loopback round trips through the coordinator: one TCP connection per request,
 * as pgcopydb's clients do, answered from a real catalog (sentinel writes are
 * committed under the catalog write lock). Run: deno bench -A bench/sentinel_rtt_bench.ts
 */
import { Catalog } from "../lib/catalog/catalog.ts";
import { setupSentinel } from "../lib/catalog/sentinel_store.ts";
import { Coordinator } from "../lib/sentinel/coordinator.ts";
import { TcpSentinelTransport } from "../lib/sentinel/client.ts";
import { setLogLevel } from "../lib/log.ts";

setLogLevel("error");
const dir = await Deno.makeTempDir({ prefix: "pgferry-rtt-" });
const catalog = await Catalog.open(dir, { create: true });
await setupSentinel(catalog, 0n, 0n);
const coordinator = Coordinator.start({ host: "127.0.0.1", port: 0, catalog });
const client = new TcpSentinelTransport({ host: "127.0.0.1", port: coordinator.port });
const secret = new TextEncoder().encode("bench secret");
const secured = Coordinator.start({ host: "127.0.0.1", port: 0, catalog, secret });
const securedClient = new TcpSentinelTransport({ host: "127.0.0.1", port: secured.port, secret });
let lsn = 1n;

Deno.bench("sentinel get over TCP", async () => {
  await client.get();
});

Deno.bench("sentinel set endpos over TCP", async () => {
  await client.setEndpos(lsn++, "bench");
});

Deno.bench("sentinel get over TCP with the secret (challenge–response)", async () => {
  await securedClient.get();
});

globalThis.addEventListener("unload", () => {
  catalog.close();
});
