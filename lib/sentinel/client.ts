/**
 * The TCP side of `stream sentinel …`: one connection per request, as
 * pgcopydb's clients do, so pgferry also talks to a pgcopydb coordinator.
 * It never opens the catalog, and never falls back to it.
 */
import type { Sentinel } from "../catalog/sentinel_store.ts";
import { errorMessage, OperatorError } from "../errors.ts";
import type { Lsn } from "../lsn.ts";
import { clientProof, equalBytes, newNonce, serverProof } from "./auth.ts";
import { type SentinelMessage, SentinelProtocolError, type StreamStatus } from "./codec.ts";
import { closeQuietly, FrameIo, ReadTimeout } from "./coordinator.ts";
import type { CleanupResult } from "./coordinator.ts";
import type { SentinelTransport } from "./transport.ts";

export interface Endpoint {
  host: string;
  port: number;
  secret?: Uint8Array | undefined;
  /** PEM text of the CA that signed the coordinator's certificate: use TLS. */
  tlsCa?: string | undefined;
  /** Connect and answer deadline (default 5 s). */
  timeoutMs?: number;
}

function where(endpoint: Endpoint): string {
  return `"${endpoint.host}:${endpoint.port}"`;
}

function unreachable(endpoint: Endpoint, detail: string, cause?: unknown): OperatorError {
  return new OperatorError(`cannot reach the coordinator at ${where(endpoint)}: ${detail}`, {
    hint:
      "check that pgferry follow (or clone --follow) runs with --host/--port (PGFERRY_HOST/PGFERRY_PORT) and that this host can reach it",
    cause,
  });
}

async function open(endpoint: Endpoint, timeoutMs: number): Promise<Deno.Conn> {
  const connecting = endpoint.tlsCa === undefined
    ? Deno.connect({ hostname: endpoint.host, port: endpoint.port })
    : Deno.connectTls({ hostname: endpoint.host, port: endpoint.port, caCerts: [endpoint.tlsCa] });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      connecting.then(closeQuietly, () => {});
      reject(new ReadTimeout(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([connecting, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends one request on a new connection and returns the reply; ERROR replies throw. */
export async function exchange(
  endpoint: Endpoint,
  request: SentinelMessage,
): Promise<SentinelMessage> {
  const timeoutMs = endpoint.timeoutMs ?? 5000;
  let conn: Deno.Conn;
  try {
    conn = await open(endpoint, timeoutMs);
  } catch (err) {
    throw unreachable(endpoint, errorMessage(err), err);
  }
  const io = new FrameIo(conn, timeoutMs);
  try {
    if (endpoint.secret !== undefined) await authenticate(io, endpoint, endpoint.secret);
    await io.send(request);
    const reply = await io.next();
    if (reply === undefined) {
      throw unreachable(endpoint, `the connection closed before an answer to ${request.type}`);
    }
    if (reply.type === "Error") {
      throw new OperatorError(
        `The coordinator at ${where(endpoint)} refused ${request.type}: ${reply.message}`,
        reply.message.startsWith("Authentication")
          ? { hint: "give the coordinator's secret in PGFERRY_SECRET or --secret-file" }
          : {},
      );
    }
    return reply;
  } catch (err) {
    if (err instanceof OperatorError) throw err;
    if (err instanceof ReadTimeout) {
      throw unreachable(endpoint, `no answer within ${timeoutMs} ms`, err);
    }
    if (err instanceof SentinelProtocolError) {
      throw new OperatorError(
        `The peer at ${where(endpoint)} does not speak the sentinel protocol: ${err.message}`,
        { cause: err },
      );
    }
    throw unreachable(endpoint, errorMessage(err), err);
  } finally {
    closeQuietly(conn);
  }
}

/**
 * Subscribes to position updates (WATCH): calls `onUpdate` for each until it
 * returns true, answering the coordinator's pings. A coordinator silent for
 * 15 s counts as gone.
 */
export async function watchSentinel(
  endpoint: Endpoint,
  onUpdate: (sentinel: Sentinel) => boolean | Promise<boolean>,
): Promise<void> {
  const timeoutMs = endpoint.timeoutMs ?? 5000;
  let conn: Deno.Conn;
  try {
    conn = await open(endpoint, timeoutMs);
  } catch (err) {
    throw unreachable(endpoint, errorMessage(err), err);
  }
  const io = new FrameIo(conn, timeoutMs);
  try {
    if (endpoint.secret !== undefined) await authenticate(io, endpoint, endpoint.secret);
    await io.send({ type: "Watch" });
    io.timeoutMs = 15_000;
    for (;;) {
      const message = await io.next();
      if (message === undefined) {
        throw unreachable(endpoint, "the coordinator closed the subscription");
      }
      if (message.type === "Ping") await io.send({ type: "Pong" });
      else if (message.type === "Error") {
        throw new OperatorError(
          `The coordinator at ${where(endpoint)} refused WATCH: ${message.message}`,
        );
      } else if (message.type === "PositionUpdate" && await onUpdate(message.sentinel)) return;
    }
  } catch (err) {
    if (err instanceof OperatorError) throw err;
    if (err instanceof ReadTimeout) throw unreachable(endpoint, "no message for 15 s", err);
    throw unreachable(endpoint, errorMessage(err), err);
  } finally {
    closeQuietly(conn);
  }
}

async function authenticate(io: FrameIo, endpoint: Endpoint, secret: Uint8Array): Promise<void> {
  await io.send({ type: "AuthRequest" });
  const challenge = await io.next();
  if (challenge?.type === "Error") {
    throw new OperatorError(
      `The coordinator at ${where(endpoint)} refused to authenticate: ${challenge.message}`,
      { hint: "the coordinator has no secret: unset PGFERRY_SECRET on this side, or set it there" },
    );
  }
  if (challenge?.type !== "AuthChallenge") {
    throw unreachable(endpoint, `expected AUTH_CHALLENGE, got ${challenge?.type ?? "nothing"}`);
  }
  const clientNonce = newNonce();
  await io.send({
    type: "AuthResponse",
    clientNonce,
    proof: await clientProof(secret, challenge.serverNonce, clientNonce),
  });
  const ok = await io.next();
  if (ok?.type === "Error") {
    throw new OperatorError(`The coordinator at ${where(endpoint)} refused the secret`, {
      hint: "use the same PGFERRY_SECRET (or --secret-file) as the follow process",
    });
  }
  if (ok?.type !== "AuthOk") {
    throw unreachable(endpoint, `expected AUTH_OK, got ${ok?.type ?? "nothing"}`);
  }
  const expected = await serverProof(secret, challenge.serverNonce, clientNonce);
  if (!equalBytes(expected, ok.serverProof)) {
    throw new OperatorError(`The coordinator at ${where(endpoint)} does not know the secret`, {
      hint: "another process may be listening on that port",
    });
  }
}

function expect<T extends SentinelMessage["type"]>(
  reply: SentinelMessage,
  type: T,
): Extract<SentinelMessage, { type: T }> {
  if (reply.type !== type) {
    throw new OperatorError(`Unexpected ${reply.type} from the coordinator, expected ${type}`);
  }
  return reply as Extract<SentinelMessage, { type: T }>;
}

/** The sentinel, over TCP. */
export class TcpSentinelTransport implements SentinelTransport {
  readonly endpoint: Endpoint;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  async ping(): Promise<void> {
    expect(await exchange(this.endpoint, { type: "Ping" }), "Pong");
  }

  async get(): Promise<Sentinel> {
    return expect(await exchange(this.endpoint, { type: "QuerySentinel" }), "SentinelReply")
      .sentinel;
  }

  async status(): Promise<StreamStatus> {
    return expect(await exchange(this.endpoint, { type: "QueryStatus" }), "StatusReply").status;
  }

  async setStartpos(lsn: Lsn, reason: string): Promise<void> {
    expect(await exchange(this.endpoint, { type: "SetStartpos", lsn, reason }), "AckConfirmed");
  }

  async setEndpos(lsn: Lsn, reason: string): Promise<void> {
    expect(await exchange(this.endpoint, { type: "SetEndpos", lsn, reason }), "AckConfirmed");
  }

  async setApply(apply: boolean): Promise<void> {
    expect(await exchange(this.endpoint, { type: "SetApply", apply }), "AckConfirmed");
  }

  async cleanup(dryRun: boolean): Promise<CleanupResult> {
    const reply = expect(
      await exchange(this.endpoint, { type: "Cleanup", dryRun }),
      "CleanupReply",
    );
    return {
      filesDeleted: reply.filesDeleted,
      bytesFreed: reply.bytesFreed,
      safeLsn: reply.safeLsn,
    };
  }

  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  }
}
