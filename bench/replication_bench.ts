/**
 * The replication hot path: parsing CopyData payloads, encoding status updates,
 * and the client's framing over a loopback socket (a scripted walsender that
 * blasts pre-encoded XLogData, so the server's decoding speed is out of the way).
 * Run: deno bench -A bench/replication_bench.ts
 */
import {
  encodeStandbyStatusUpdate,
  parseReplicationMessage,
} from "../lib/pg/replication_messages.ts";
import { ReplicationConnection } from "../lib/pg/replication.ts";

const encoder = new TextEncoder();
const row = encoder.encode(
  "table public.bench: INSERT: id[integer]:123456 name[text]:'name 123456' v[numeric]:185184.0",
);
const xlogData = new Uint8Array(25 + row.length);
xlogData[0] = 0x77;
xlogData.set(row, 25);
const keepalive = new Uint8Array(18);
keepalive[0] = 0x6b;

Deno.bench("parseReplicationMessage() XLogData", { group: "codec", baseline: true }, () => {
  parseReplicationMessage(xlogData);
});

Deno.bench("parseReplicationMessage() PrimaryKeepalive", { group: "codec" }, () => {
  parseReplicationMessage(keepalive);
});

Deno.bench("encodeStandbyStatusUpdate()", { group: "codec" }, () => {
  encodeStandbyStatusUpdate({ write: 0x1_0000_0000n, flush: 0x1_0000_0000n, apply: 0n });
});

function frame(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setUint32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

const MESSAGES = 20_000;
const dataFrame = frame("d", xlogData);
const burst = new Uint8Array(dataFrame.length * MESSAGES);
for (let i = 0; i < MESSAGES; i++) burst.set(dataFrame, i * dataFrame.length);
const handshake = new Uint8Array([
  ...frame("R", new Uint8Array(4)),
  ...frame("Z", encoder.encode("I")),
]);
const copyBoth = frame("W", new Uint8Array(3));
const copyDone = frame("c", new Uint8Array(0));
const copyEnd = new Uint8Array([
  ...frame("C", encoder.encode("COPY 0\0")),
  ...frame("Z", encoder.encode("I")),
]);

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/** One client: startup → ok, START_REPLICATION → CopyBoth, the burst, CopyDone, ReadyForQuery. */
async function scriptedWalsender(listener: Deno.Listener): Promise<void> {
  const conn = await listener.accept();
  const scratch = new Uint8Array(64 * 1024);
  try {
    await conn.read(scratch); // StartupMessage
    await writeAll(conn, handshake);
    await conn.read(scratch); // Query
    await writeAll(conn, copyBoth);
    await writeAll(conn, burst);
    await writeAll(conn, copyDone);
    await conn.read(scratch); // the client's CopyDone
    await writeAll(conn, copyEnd);
    await conn.read(scratch); // Terminate
  } catch {
    /* the client went away */
  } finally {
    conn.close();
  }
}

Deno.bench(`ReplicationStream reads ${MESSAGES} XLogData over loopback`, {
  group: "stream",
}, async (b) => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const server = scriptedWalsender(listener);
  const conn = await ReplicationConnection.connect(
    `postgres://bench@127.0.0.1:${port}/bench?sslmode=disable`,
  );
  const stream = await conn.startLogical("bench", 0n, { autoReply: false });
  b.start();
  let count = 0;
  for await (const message of stream) if (message.tag === "XLogData") count++;
  b.end();
  if (count !== MESSAGES) throw new Error(`read ${count} of ${MESSAGES} messages`);
  await conn.close();
  await server;
  listener.close();
});
