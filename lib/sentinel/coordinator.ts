/**
 * The sentinel coordinator: serves the sentinel TCP protocol from inside the
 * follow supervisor, so that operators steer a running follow from another
 * host or container without sharing the catalog's files.
 *
 * Every answer is read from (and every change written to) the catalog, under
 * the same write lock as the pipeline's workers: never from a cached copy. It
 * is plain async work on the supervisor's event loop; a peer can only ever
 * cost itself its connection: reads have a deadline per frame, the number of
 * connections is capped, and protocol errors get an ERROR and a close.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel, updateSentinel } from "../catalog/sentinel_store.ts";
import { errorMessage, OperatorError } from "../errors.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { logger } from "../log.ts";
import {
  encodeMessage,
  FrameReader,
  type SentinelMessage,
  SentinelProtocolError,
  type StreamState,
} from "./codec.ts";
import { clientProof, equalBytes, newNonce, serverProof } from "./auth.ts";

const log = logger("coordinator");

/** What CLEANUP reports back. */
export interface CleanupResult {
  filesDeleted: bigint;
  bytesFreed: bigint;
  safeLsn: Lsn;
}

export interface CoordinatorOptions {
  host: string;
  port: number;
  catalog: Catalog;
  /** Required on a non-loopback address unless `insecure`. */
  secret?: Uint8Array | undefined;
  insecure?: boolean;
  /** PEM text of a certificate and its key: serve TLS. */
  tls?: { cert: string; key: string } | undefined;
  /** How long a peer may take to send one whole frame (default 5 s). */
  readTimeoutMs?: number;
  /** Connections served at once; more are refused with an ERROR (default 64). */
  maxConnections?: number;
  /** The pipeline's state, for QUERY_STATUS. */
  state?: () => StreamState;
  /** Messages a watch subscriber may have queued before it is cut off (default 64). */
  watchQueueLimit?: number;
  /** Watch keepalive: PING every this often (default 5 s); a peer silent for 3 × this is dropped. */
  watchPingMs?: number;
  /** Prunes the spool, for CLEANUP. */
  cleanup?: (dryRun: boolean) => Promise<CleanupResult>;
  /** Told of every request served: its message type and how it ended (for metrics). */
  onRequest?: (type: string, result: RequestResult) => void;
}

/** How a request ended: answered, answered with an ERROR, or refused before it was read. */
export type RequestResult = "ok" | "error" | "refused";

const WATCH_PING_MS = 5000;
const WATCH_POLL_MS = 200;

/** One `watch` connection: what is waiting to be sent to it. */
interface Subscriber {
  queue: SentinelMessage[];
  wake: (() => void) | undefined;
  push?: (message: SentinelMessage) => void;
  /** The last sentinel sent, to send only changes. */
  last: string;
  closed: boolean;
}

/** Whether an address only accepts connections from this host. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A running coordinator. `close()` stops listening and drops every connection. */
export class Coordinator implements AsyncDisposable {
  readonly #options: CoordinatorOptions;
  readonly #listener: Deno.Listener;
  readonly #connections = new Set<Deno.Conn>();
  readonly #handlers = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  readonly #subscribers = new Set<Subscriber>();
  #poller: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  private constructor(options: CoordinatorOptions, listener: Deno.Listener) {
    this.#options = options;
    this.#listener = listener;
    this.#accepting = this.#acceptLoop();
  }

  /** Starts listening; refuses a non-loopback address without a secret unless told otherwise. */
  static start(options: CoordinatorOptions): Coordinator {
    if (!isLoopback(options.host) && options.secret === undefined && !options.insecure) {
      throw new OperatorError(
        `Refusing to serve the sentinel on "${options.host}:${options.port}" without a secret: anyone who can reach that address could stop or redirect the migration`,
        {
          hint:
            "set PGFERRY_SECRET or --secret-file (clients need the same secret), listen on 127.0.0.1, or pass --insecure on a network you trust",
        },
      );
    }
    let listener: Deno.Listener;
    try {
      listener = options.tls
        ? Deno.listenTls({
          hostname: options.host,
          port: options.port,
          cert: options.tls.cert,
          key: options.tls.key,
        })
        : Deno.listen({ hostname: options.host, port: options.port });
    } catch (err) {
      throw new OperatorError(
        `Cannot listen on "${options.host}:${options.port}": ${errorMessage(err)}`,
        { hint: "choose another --port (PGFERRY_PORT) or stop what uses this one", cause: err },
      );
    }
    const addr = listener.addr as Deno.NetAddr;
    log.info(`listening on ${addr.hostname}:${addr.port}`, {
      auth: options.secret ? "secret" : "none",
      tls: options.tls !== undefined,
    });
    return new Coordinator(options, listener);
  }

  /** The port actually bound (useful with port 0). */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poller !== undefined) clearInterval(this.#poller);
    this.#listener.close();
    for (const conn of this.#connections) closeQuietly(conn);
    await this.#accepting;
    await Promise.all(this.#handlers);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closed) return;
        // A failed handshake or a peer gone before accept: keep serving.
        log.debug(`accept failed: ${errorMessage(err)}`);
        continue;
      }
      this.#connections.add(conn);
      const handler = this.#serve(conn).finally(() => {
        this.#connections.delete(conn);
        this.#handlers.delete(handler);
      });
      this.#handlers.add(handler);
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const remote = conn.remoteAddr as Deno.NetAddr;
    const peer = `${remote.hostname}:${remote.port}`;
    const io = new FrameIo(conn, this.#options.readTimeoutMs ?? 5000);
    try {
      if (this.#connections.size > (this.#options.maxConnections ?? 64)) {
        log.warn("too many connections: refusing one", { peer });
        this.#options.onRequest?.("Connect", "refused");
        await io.send({ type: "Error", message: "Too many connections to the coordinator" });
        return;
      }
      let authenticated = this.#options.secret === undefined;
      for (;;) {
        const request = await io.next();
        if (request === undefined) return;
        if (!authenticated) {
          authenticated = await this.#authenticate(io, request, peer);
          this.#options.onRequest?.(request.type, authenticated ? "ok" : "error");
          if (!authenticated) return;
          continue;
        }
        if (request.type === "Watch") {
          this.#options.onRequest?.(request.type, "ok");
          await this.#watch(io, conn, peer);
          return;
        }
        const reply = await this.#answer(request, peer);
        this.#options.onRequest?.(request.type, reply.type === "Error" ? "error" : "ok");
        await io.send(reply);
        if (reply.type === "Error") return;
      }
    } catch (err) {
      if (err instanceof SentinelProtocolError) {
        log.warn(`bad request: ${err.message}`, { peer });
        this.#options.onRequest?.("Invalid", "error");
        await io.send({ type: "Error", message: err.message }).catch(() => {});
      } else if (err instanceof ReadTimeout) {
        log.warn(`no complete request within ${io.timeoutMs} ms: closing`, { peer });
      } else if (!this.#closed) {
        log.debug(`connection ended: ${errorMessage(err)}`, { peer });
      }
    } finally {
      closeQuietly(conn);
    }
  }

  /**
   * A subscription: POSITION_UPDATE whenever the sentinel changes, PING every
   * 5 s; the peer answers PONG. A peer silent for 15 s is dropped, and one that
   * does not read (its queue passes the bound) is cut off rather than waited for.
   */
  async #watch(io: FrameIo, conn: Deno.Conn, peer: string): Promise<void> {
    const subscriber: Subscriber = { queue: [], wake: undefined, last: "", closed: false };
    this.#subscribers.add(subscriber);
    this.#startPoller();
    log.info("watch subscriber joined", { peer });
    const push = (message: SentinelMessage) => {
      if (subscriber.closed) return;
      subscriber.queue.push(message);
      if (subscriber.queue.length > (this.#options.watchQueueLimit ?? 64)) {
        log.warn("watch subscriber does not read: dropping it", { peer });
        subscriber.closed = true;
        closeQuietly(conn);
      }
      subscriber.wake?.();
    };
    subscriber.push = push;
    push({ type: "PositionUpdate", sentinel: readSentinel(this.#options.catalog.db) });
    const pingMs = this.#options.watchPingMs ?? WATCH_PING_MS;
    const pinger = setInterval(() => push({ type: "Ping" }), pingMs);
    const writer = (async () => {
      while (!subscriber.closed) {
        const message = subscriber.queue.shift();
        if (message === undefined) {
          await new Promise<void>((resolve) => (subscriber.wake = resolve));
          subscriber.wake = undefined;
          continue;
        }
        await io.send(message);
      }
    })();
    try {
      io.timeoutMs = 3 * pingMs;
      for (;;) {
        const message = await io.next();
        if (message === undefined || subscriber.closed) break;
        if (message.type === "Ping") push({ type: "Pong" });
      }
    } catch (err) {
      if (err instanceof ReadTimeout) {
        log.warn("watch subscriber silent for 15 s: dropping it", { peer });
      } else if (!subscriber.closed) throw err;
    } finally {
      clearInterval(pinger);
      subscriber.closed = true;
      subscriber.wake?.();
      this.#subscribers.delete(subscriber);
      closeQuietly(conn);
      await writer.catch(() => {});
    }
  }

  /** One poller for every subscriber: reads the sentinel while anyone watches. */
  #startPoller(): void {
    if (this.#poller !== undefined) return;
    this.#poller = setInterval(() => {
      if (this.#subscribers.size === 0) {
        clearInterval(this.#poller);
        this.#poller = undefined;
        return;
      }
      let sentinel;
      try {
        sentinel = readSentinel(this.#options.catalog.db);
      } catch {
        return;
      }
      const key = JSON.stringify(sentinel, (_k, v) => typeof v === "bigint" ? v.toString() : v);
      for (const subscriber of this.#subscribers) {
        if (subscriber.last === key) continue;
        subscriber.last = key;
        subscriber.push?.({ type: "PositionUpdate", sentinel });
      }
    }, WATCH_POLL_MS);
  }

  /** Challenge–response; true when the peer proved that it knows the secret. */
  async #authenticate(io: FrameIo, request: SentinelMessage, peer: string): Promise<boolean> {
    const secret = this.#options.secret!;
    if (request.type !== "AuthRequest") {
      log.warn(`refused ${request.type}: the peer did not authenticate`, { peer });
      await io.send({
        type: "Error",
        message: "Authentication required: this coordinator has a secret (PGFERRY_SECRET)",
      });
      return false;
    }
    const serverNonce = newNonce();
    await io.send({ type: "AuthChallenge", serverNonce });
    const response = await io.next();
    if (response?.type !== "AuthResponse") {
      await io.send({ type: "Error", message: "Authentication failed: expected AUTH_RESPONSE" });
      return false;
    }
    const expected = await clientProof(secret, serverNonce, response.clientNonce);
    if (!equalBytes(expected, response.proof)) {
      log.warn("authentication failed: wrong secret or replayed proof", { peer });
      await io.send({ type: "Error", message: "Authentication failed" });
      return false;
    }
    await io.send({
      type: "AuthOk",
      serverProof: await serverProof(secret, serverNonce, response.clientNonce),
    });
    return true;
  }

  async #answer(request: SentinelMessage, peer: string): Promise<SentinelMessage> {
    const catalog = this.#options.catalog;
    try {
      switch (request.type) {
        case "Ping":
          return { type: "Pong" };
        case "QuerySentinel":
          return { type: "SentinelReply", sentinel: readSentinel(catalog.db) };
        case "QueryStatus": {
          const s = readSentinel(catalog.db);
          return {
            type: "StatusReply",
            status: {
              startpos: s.startpos,
              endpos: s.endpos,
              writeLsn: s.writeLsn,
              flushLsn: s.flushLsn,
              replayLsn: s.replayLsn,
              state: this.#options.state?.() ?? "init",
            },
          };
        }
        case "SetEndpos":
        case "SetStartpos": {
          const field = request.type === "SetEndpos" ? "endpos" : "startpos";
          await updateSentinel(catalog, { [field]: request.lsn });
          const detail = `${formatLsn(request.lsn)} from ${peer}: ${request.reason}`;
          await catalog.log(`sentinel set ${field}`, detail);
          log.info(`${field} set to ${formatLsn(request.lsn)}`, { peer, reason: request.reason });
          return { type: "AckConfirmed" };
        }
        case "SetApply": {
          await updateSentinel(catalog, { apply: request.apply });
          const mode = request.apply ? "apply" : "prefetch";
          await catalog.log("sentinel set apply", `${mode} from ${peer}`);
          log.info(`apply ${request.apply ? "enabled" : "disabled"}`, { peer });
          return { type: "AckConfirmed" };
        }
        case "Cleanup": {
          if (this.#options.cleanup === undefined) {
            return { type: "Error", message: "CLEANUP is not served by this process" };
          }
          const result = await this.#options.cleanup(request.dryRun);
          log.info(`cleanup${request.dryRun ? " (dry run)" : ""}`, {
            peer,
            files: result.filesDeleted,
            bytes: result.bytesFreed,
          });
          return { type: "CleanupReply", ...result, dryRun: request.dryRun };
        }
        default:
          return { type: "Error", message: `Unexpected ${request.type} message from a client` };
      }
    } catch (err) {
      log.warn(`${request.type} failed: ${errorMessage(err)}`, { peer });
      return { type: "Error", message: errorMessage(err) };
    }
  }
}

/** Raised when a peer does not complete a frame in time. */
export class ReadTimeout extends Error {
  override name = "ReadTimeout";
}

/**
 * Frames over one connection, shared by the coordinator and the client: a
 * deadline for each whole frame (not each read), so a peer that dribbles one
 * byte at a time is cut off like one that sends nothing.
 */
export class FrameIo {
  readonly #conn: Deno.Conn;
  readonly #reader = new FrameReader();
  readonly #queue: SentinelMessage[] = [];
  readonly #buf = new Uint8Array(4096);
  /** Deadline for each whole frame; a subscription waits longer. */
  timeoutMs: number;

  constructor(conn: Deno.Conn, timeoutMs: number) {
    this.#conn = conn;
    this.timeoutMs = timeoutMs;
  }

  /** The next message, or undefined at a clean end of stream. */
  async next(): Promise<SentinelMessage | undefined> {
    const deadline = Date.now() + this.timeoutMs;
    while (this.#queue.length === 0) {
      const n = await this.#read(deadline);
      if (n === null) {
        this.#reader.end();
        return undefined;
      }
      this.#queue.push(...this.#reader.push(this.#buf.subarray(0, n)));
    }
    return this.#queue.shift();
  }

  async send(message: SentinelMessage): Promise<void> {
    const bytes = encodeMessage(message);
    let written = 0;
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }

  async #read(deadline: number): Promise<number | null> {
    const left = deadline - Date.now();
    if (left <= 0) throw new ReadTimeout(`No complete frame within ${this.timeoutMs} ms`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new ReadTimeout(`No complete frame within ${this.timeoutMs} ms`));
        closeQuietly(this.#conn); // makes the pending read settle
      }, left);
    });
    try {
      return await Promise.race([this.#conn.read(this.#buf), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
