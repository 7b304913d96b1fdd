/**
 * `/metrics` of a follow process, over HTTP: the registry's counters as the
 * stages post them, and gauges read at each scrape — the sentinel, the
 * source's position and its slot, the spool, the watchdog's stall.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel } from "../catalog/sentinel_store.ts";
import { errorMessage, OperatorError } from "../errors.ts";
import { logger } from "../log.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { readSlotUsage, type SlotUsage } from "../pg/slot_usage.ts";
import { spoolUsage } from "../spool/usage.ts";
import type { MetricsRegistry } from "./metrics.ts";
import type { Watchdog } from "./watchdog.ts";

const log = logger("metrics");

/** Where to serve `/metrics`. */
export interface MetricsEndpoint {
  host: string;
  port: number;
}

/** What a scrape reads. */
export interface MetricsContext {
  dir: string;
  catalog: Catalog;
  source: string;
  slot: string;
  registry: MetricsRegistry;
  watchdog: Watchdog | undefined;
}

/** How long a scrape waits for the source's position. */
const SOURCE_QUERY_TIMEOUT_MS = 2000;

/** Serves `GET /metrics` (404 elsewhere) until `close()`. */
export class MetricsServer implements AsyncDisposable {
  readonly #context: MetricsContext;
  readonly #server: Deno.HttpServer;
  /** Opened on first use, dropped when it fails: the next scrape opens another. */
  /** The client of the source, made once (concurrent scrapes share it). */
  #source: Promise<Sql> | undefined;

  private constructor(endpoint: MetricsEndpoint, context: MetricsContext) {
    this.#context = context;
    try {
      this.#server = Deno.serve({
        hostname: endpoint.host,
        port: endpoint.port,
        onListen: ({ hostname, port }) => log.info(`serving /metrics on ${hostname}:${port}`),
      }, (request) => this.#handle(request));
    } catch (err) {
      throw new OperatorError(
        `Cannot serve metrics on "${endpoint.host}:${endpoint.port}": ${errorMessage(err)}`,
        {
          hint: "choose another --metrics-port (PGFERRY_METRICS_PORT) or stop what uses this one",
          cause: err,
        },
      );
    }
  }

  static start(endpoint: MetricsEndpoint, context: MetricsContext): MetricsServer {
    return new MetricsServer(endpoint, context);
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
    await (await this.#source)?.end({ timeout: 5 });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #handle(request: Request): Promise<Response> {
    if (new URL(request.url).pathname !== "/metrics") {
      return new Response("Not found\n", { status: 404 });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    try {
      await this.#collect();
    } catch (err) {
      log.warn(`collecting metrics failed: ${errorMessage(err)}`);
    }
    return new Response(this.#context.registry.render(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }

  async #collect(): Promise<void> {
    const { catalog, dir, registry, watchdog } = this.#context;
    const s = readSentinel(catalog.db);
    registry.set("pgferry_startpos_lsn", Number(s.startpos));
    registry.set("pgferry_endpos_lsn", Number(s.endpos));
    registry.set("pgferry_write_lsn", Number(s.writeLsn));
    registry.set("pgferry_flush_lsn", Number(s.flushLsn));
    registry.set("pgferry_replay_lsn", Number(s.replayLsn));
    registry.set("pgferry_apply_lag_bytes", Math.max(0, Number(s.writeLsn - s.replayLsn)));
    registry.set("pgferry_apply_stalled", watchdog?.stalled ? 1 : 0);
    const committed = registry.get("pgferry_apply_last_commit_timestamp_seconds");
    if (s.replayLsn >= s.writeLsn) registry.set("pgferry_apply_lag_seconds", 0);
    else if (committed === undefined) registry.clear("pgferry_apply_lag_seconds");
    else registry.set("pgferry_apply_lag_seconds", Math.max(0, Date.now() / 1000 - committed));
    const spool = await spoolUsage(dir);
    registry.set("pgferry_spool_bytes", spool.bytes);
    registry.set("pgferry_spool_files", spool.files);
    const usage = await this.#sourceUsage();
    // Not known right now: left out rather than stale.
    registry.clear("pgferry_source_current_lsn");
    registry.clear("pgferry_receive_lag_bytes");
    registry.clear("pgferry_slot_retained_bytes");
    if (usage === undefined) return;
    registry.set("pgferry_source_current_lsn", Number(usage.currentLsn));
    registry.set("pgferry_receive_lag_bytes", Math.max(0, Number(usage.currentLsn - s.writeLsn)));
    const retained = usage.slot?.retainedBytes;
    if (retained !== undefined) registry.set("pgferry_slot_retained_bytes", Number(retained));
  }

  /** The source's position and the slot's, or undefined when the source does not answer in time. */
  async #sourceUsage(): Promise<SlotUsage | undefined> {
    const client = this.#source ??= connect(this.#context.source, { role: "source" });
    const source = await client;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${SOURCE_QUERY_TIMEOUT_MS} ms`)),
        SOURCE_QUERY_TIMEOUT_MS,
      );
    });
    try {
      return await Promise.race([readSlotUsage(source, this.#context.slot), timeout]);
    } catch (err) {
      log.debug(`cannot read the source's position: ${errorMessage(err)}`);
      if (this.#source === client) this.#source = undefined;
      source.end({ timeout: 0 }).catch(() => {});
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}
