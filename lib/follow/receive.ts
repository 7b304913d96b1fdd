/**
 * Receive: streams the slot's changes into the spool.
 *
 * Starts at the later of the sentinel's startpos and how far the spool is
 * complete (the slot itself never goes back before its confirmed_flush_lsn).
 * The flush position reported to the source is what the spool has fsynced at
 * a transaction boundary: the slot never lets go of a change we could lose.
 * Stops at endpos: a keepalive at or past it with no transaction open, or any
 * change past it (every transaction ending at or before endpos is then in).
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel, updateSentinel } from "../catalog/sentinel_store.ts";
import type { Change } from "../decode/change.ts";
import { DECODING_SESSION_SETTINGS } from "../decode/session_settings.ts";
import { OperatorError } from "../errors.ts";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { logger } from "../log.ts";
import { withConnection } from "../pg/connect.ts";
import { quoteLiteral } from "../pg/quote.ts";
import { ReplicationConnection } from "../pg/replication.ts";
import { SpoolWriter } from "../spool/writer.ts";
import { decoderFor, needsRelations, type Plugin } from "./decoder_for.ts";
import { loadRelations, relationLookup } from "./source_relations.ts";
import { changeFilter } from "./change_filter.ts";
import type { Filters } from "../clone/filters.ts";
import type { StageCounters } from "./metrics.ts";

const log = logger("receive");

export interface ReceiveOptions {
  dir: string;
  catalog: Catalog;
  source: string;
  slot: string;
  plugin: Plugin;
  publication: string;
  signal?: AbortSignal;
  /** Bytes and transactions received, for the supervisor. */
  counters: StageCounters;
  /** Spool segment size in bytes (default 1 GiB). */
  segmentSize?: number;
  /** Leave out the changes of the tables these filters leave out (--filters). */
  filters?: Filters;
}

export type ReceiveEnd = "endpos" | "aborted";

const STATUS_MS = 1000;

/** Receives until endpos or the signal. */
export async function runReceive(options: ReceiveOptions): Promise<ReceiveEnd> {
  const { catalog, signal } = options;
  const lookup = needsRelations(options.plugin)
    ? relationLookup(await withConnection(options.source, "source", loadRelations))
    : undefined;
  const keep = await changeFilter(options.source, options.filters);
  const { decoder, options: pluginOptions } = decoderFor(
    options.plugin,
    options.publication,
    lookup,
  );
  const spool = SpoolWriter.open(options.dir, { segmentSize: options.segmentSize ?? 2 ** 30 });
  if (spool.cutAtOpen > 0) {
    log.info(`cut ${spool.cutAtOpen} bytes of an unfinished transaction off the spool's tail`);
  }
  let sentinel = readSentinel(catalog.db);
  const start = sentinel.startpos > spool.position ? sentinel.startpos : spool.position;
  const connection = await ReplicationConnection.connect(options.source, {
    parameters: { ...DECODING_SESSION_SETTINGS, application_name: "pgferry receive" },
  });
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    await checkNoGap(connection, options.slot, start, sentinel.replayLsn);
    const stream = await connection.startLogical(options.slot, start, {
      pluginOptions: Object.fromEntries(pluginOptions),
    });
    log.info(`streaming from slot "${options.slot}" at ${formatLsn(start)} (${options.plugin})`);
    let received: Lsn = start;
    let durable = spool.sync();
    let reported = { write: -1n, flush: -1n };
    let stopping: ReceiveEnd | undefined;
    const bytesReceived = options.counters.counter("pgferry_receive_bytes_total");
    const transactionsReceived = options.counters.counter("pgferry_receive_transactions_total");

    const status = async (replyRequested = false) => {
      durable = spool.sync();
      sentinel = readSentinel(catalog.db);
      await stream.sendStatus({
        write: received > durable ? received : durable,
        flush: durable,
        apply: sentinel.replayLsn < durable ? sentinel.replayLsn : durable,
        replyRequested,
      });
      if (reported.write !== received || reported.flush !== durable) {
        await updateSentinel(catalog, { writeLsn: received, flushLsn: durable });
        reported = { write: received, flush: durable };
      }
    };
    // Periodic work also happens while the source sends nothing; with an endpos
    // set, ask for a keepalive so that an idle stream still learns it got there.
    let busy = false;
    timer = setInterval(() => {
      if (busy) return;
      busy = true;
      status(sentinel.endpos !== 0n && !spool.inTransaction)
        .catch((err) => log.debug(`status update failed: ${err}`))
        .finally(() => (busy = false));
    }, STATUS_MS);
    const onAbort = () => stream.stop().catch(() => {});
    signal?.addEventListener("abort", onAbort, { once: true });

    const pastEndpos = (change: Change) => {
      const endpos = sentinel.endpos;
      if (endpos === 0n) return false;
      if (change.tag === "Commit") return change.endLsn > endpos;
      return change.tag !== "Begin" && change.lsn > endpos;
    };

    for (;;) {
      // What one socket read brought is drained without a promise per message.
      let message = stream.nextBuffered();
      if (message === undefined) {
        const next = await stream.next();
        if (next.done) break;
        message = next.value;
      }
      if (signal?.aborted) break;
      if (message.tag === "XLogData") {
        bytesReceived.value += message.data.length;
        for (const decoded of decoder.decode(message.walStart, message.data)) {
          if (pastEndpos(decoded)) {
            stopping = "endpos";
            break;
          }
          const change = keep === undefined ? decoded : keep(decoded);
          if (change === undefined) continue;
          spool.append(change);
          if (change.tag === "Commit") transactionsReceived.value++;
          const at = change.tag === "Commit" ? change.endLsn : change.lsn;
          if (at > received) received = at;
        }
      } else if (!spool.inTransaction) {
        spool.keepalive(message.walEnd);
        if (message.walEnd > received) received = message.walEnd;
        if (sentinel.endpos !== 0n && message.walEnd >= sentinel.endpos) stopping = "endpos";
      }
      if (stopping) break;
      // About to wait for the network: let apply see what is spooled now.
      if (!stream.buffered) spool.flush();
    }
    signal?.removeEventListener("abort", onAbort);
    clearInterval(timer);
    timer = undefined;
    while (busy) await new Promise((resolve) => setTimeout(resolve, 5));
    if (stopping) {
      // Every transaction ending at or before endpos is in the spool: say so, so that
      // apply reaches endpos even when it stopped inside a later transaction.
      spool.abandonTransaction();
      spool.keepalive(sentinel.endpos);
      log.info(`reached endpos ${formatLsn(sentinel.endpos)}`);
    }
    if (!signal?.aborted) await status();
    spool.close();
    await stream.stop().catch(() => {});
    return stopping ?? "aborted";
  } finally {
    if (timer !== undefined) clearInterval(timer);
    await connection.close();
  }
}

/**
 * The slot streams from its confirmed_flush_lsn whatever position we ask for.
 * We only ever confirm what the spool holds (or apply has replayed), so a slot
 * that confirmed more than that means the spool lost transactions that the
 * slot will not send again: stop rather than leave a silent gap.
 */
async function checkNoGap(
  connection: ReplicationConnection,
  slot: string,
  start: Lsn,
  replayLsn: Lsn,
): Promise<void> {
  const result = await connection.query(
    `select confirmed_flush_lsn::text from pg_replication_slots where slot_name = ${
      quoteLiteral(slot)
    }`,
  );
  const confirmed = result.rows[0]?.[0];
  if (confirmed === undefined || confirmed === null) return; // START_REPLICATION will say
  const held = start > replayLsn ? start : replayLsn;
  if (parseLsn(confirmed) > held) {
    throw new OperatorError(
      `Cannot resume receiving at "${
        formatLsn(held)
      }": slot "${slot}" already confirmed "${confirmed}", and the changes in between are not in the spool`,
      {
        hint:
          "the spool in <dir>/cdc was cut or replaced; run with --restart to start over from a new slot",
      },
    );
  }
}
