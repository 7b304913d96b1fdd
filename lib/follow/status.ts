/**
 * What `pgferry status` reports: where each stage of the pipeline is, how far
 * apart they are, how much the spool and the source's slot hold, whether the
 * follow process runs, and whether its watchdog finds apply stalled. Read
 * from the catalog and the work directory, or from the coordinator over TCP
 * (QUERY_STATUS, QUERY_SENTINEL).
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel, type Sentinel } from "../catalog/sentinel_store.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { withConnection } from "../pg/connect.ts";
import { readSlotUsage, type SlotUsage } from "../pg/slot_usage.ts";
import type { TcpSentinelTransport } from "../sentinel/client.ts";
import type { StreamState } from "../sentinel/codec.ts";
import { type SpoolUsage, spoolUsage } from "../spool/usage.ts";
import { readPidFiles, type StageName, type StageProcess, STAGES } from "./pid_files.ts";
import { readSetup } from "./setup.ts";
import { readStall, type Stall } from "./watchdog.ts";

/**
 * The follow process's state: over TCP, the coordinator's own (init,
 * streaming, done, error); from the work directory, whether a process runs a
 * stage (holds `<dir>/receive.pid` or `<dir>/apply.pid`): running, stopped.
 */
export type FollowState = StreamState | "running" | "stopped";

/** Everything status knows; absent parts could not be seen from where it looked. */
export interface PipelineStatus {
  via: "catalog" | "tcp";
  /** The work directory (catalog) or host:port (tcp). */
  where: string;
  state: FollowState;
  /** The follow process's pid (catalog only; with "stopped", the last one). */
  pid: number | undefined;
  /** Which process runs each stage (catalog only). */
  stages: Record<StageName, StageProcess> | undefined;
  sentinel: Sentinel;
  slot: string | undefined;
  source: SlotUsage | undefined;
  spool: SpoolUsage | undefined;
  /** The apply stall the running follow's watchdog sees; null when not known (tcp). */
  stall: Stall | undefined | null;
}

/** Status from the catalog and spool of `dir`; with a source URI, its position and slot too. */
export async function statusFromCatalog(
  catalog: Catalog,
  options: { source?: string | undefined; slot?: string | undefined } = {},
): Promise<PipelineStatus> {
  const sentinel = readSentinel(catalog.db);
  const slot = options.slot ?? readSetup(catalog)?.slot;
  const [stages, spool, source, stall] = await Promise.all([
    readPidFiles(catalog.dir),
    spoolUsage(catalog.dir),
    sourceUsage(options.source, slot),
    readStall(catalog.dir),
  ]);
  return {
    via: "catalog",
    where: catalog.dir,
    state: STAGES.some((stage) => stages[stage].running) ? "running" : "stopped",
    pid: (STAGES.map((stage) => stages[stage]).find((p) => p.running) ??
      STAGES.map((stage) => stages[stage]).find((p) => p.pid !== undefined))?.pid,
    stages,
    sentinel,
    slot,
    source,
    spool,
    stall: stages.apply.running ? stall : undefined, // a file left by a dead process says nothing
  };
}

/** Status from a running follow's coordinator; with a source URI, its position and slot too. */
export async function statusFromCoordinator(
  transport: TcpSentinelTransport,
  options: { source?: string | undefined; slot?: string | undefined } = {},
): Promise<PipelineStatus> {
  const status = await transport.status();
  const sentinel = await transport.get(); // the apply flag is not in STATUS_REPLY
  return {
    via: "tcp",
    where: `${transport.endpoint.host}:${transport.endpoint.port}`,
    state: status.state,
    pid: undefined,
    stages: undefined,
    sentinel: {
      startpos: status.startpos,
      endpos: status.endpos,
      apply: sentinel.apply,
      writeLsn: status.writeLsn,
      flushLsn: status.flushLsn,
      replayLsn: status.replayLsn,
    },
    slot: options.slot,
    source: await sourceUsage(options.source, options.slot),
    spool: undefined,
    stall: null,
  };
}

async function sourceUsage(
  source: string | undefined,
  slot: string | undefined,
): Promise<SlotUsage | undefined> {
  if (source === undefined) return undefined;
  return await withConnection(source, "source", (sql) => readSlotUsage(sql, slot ?? ""));
}

/** `a - b` in bytes, 0 when b is ahead (positions are reported at different moments). */
function distance(a: Lsn, b: Lsn): number {
  return a > b ? Number(a - b) : 0;
}

/** The status as JSON-ready values: LSNs as `X/Y`, sizes and lags in bytes. */
export function statusJson(status: PipelineStatus): Record<string, unknown> {
  const s = status.sentinel;
  const current = status.source?.currentLsn;
  const slot = status.source?.slot;
  return {
    via: status.via,
    where: status.where,
    state: status.state,
    pid: status.pid ?? null,
    stages: status.stages === undefined ? null : Object.fromEntries(
      Object.entries(status.stages).map(([stage, p]) => [stage, {
        running: p.running,
        pid: p.pid ?? null,
      }]),
    ),
    sentinel: {
      startpos: formatLsn(s.startpos),
      endpos: formatLsn(s.endpos),
      apply: s.apply,
      write_lsn: formatLsn(s.writeLsn),
      flush_lsn: formatLsn(s.flushLsn),
      replay_lsn: formatLsn(s.replayLsn),
    },
    endpos_reached: s.endpos !== 0n && s.replayLsn >= s.endpos,
    stalled: status.stall === null ? null : status.stall !== undefined,
    stall: status.stall ? stallJson(status.stall) : null,
    lag_bytes: {
      source_to_write: current === undefined ? null : distance(current, s.writeLsn),
      write_to_flush: distance(s.writeLsn, s.flushLsn),
      flush_to_replay: distance(s.flushLsn, s.replayLsn),
      source_to_replay: current === undefined ? null : distance(current, s.replayLsn),
    },
    source: status.source === undefined ? null : {
      current_lsn: formatLsn(status.source.currentLsn),
      slot: slot === undefined ? null : {
        name: status.slot ?? null,
        active: slot.active,
        restart_lsn: slot.restartLsn === undefined ? null : formatLsn(slot.restartLsn),
        confirmed_flush_lsn: slot.confirmedFlushLsn === undefined
          ? null
          : formatLsn(slot.confirmedFlushLsn),
        retained_bytes: slot.retainedBytes === undefined ? null : Number(slot.retainedBytes),
      },
    },
    spool: status.spool === undefined ? null : {
      files: status.spool.files,
      bytes: status.spool.bytes,
      first: status.spool.first === undefined ? null : formatLsn(status.spool.first),
      last: status.spool.last === undefined ? null : formatLsn(status.spool.last),
    },
  };
}

function stallJson(stall: Stall) {
  return {
    since: stall.since,
    seconds: Math.round((Date.now() - Date.parse(stall.since)) / 1000),
    replay_lsn: formatLsn(stall.replayLsn),
    timeout_seconds: stall.timeoutSeconds,
    restarts: stall.restarts,
  };
}

/** The status as aligned `name  text` lines, one per stage. */
export function statusLines(status: PipelineStatus): string[] {
  const s = status.sentinel;
  const current = status.source?.currentLsn;
  const lines: [string, string][] = [];
  lines.push(["follow", `${status.state}${processText(status)} [${status.via} ${status.where}]`]);
  if (status.source !== undefined) {
    const slot = status.source.slot;
    const slotText = slot === undefined
      ? `, slot "${status.slot ?? ""}" not found`
      : `, slot "${status.slot}" ${slot.active ? "active" : "inactive"}${
        slot.retainedBytes === undefined ? "" : `, retains ${slot.retainedBytes} bytes of WAL`
      }`;
    lines.push(["source", `current_lsn ${formatLsn(status.source.currentLsn)}${slotText}`]);
  }
  const behind = current === undefined
    ? ""
    : `, ${distance(current, s.writeLsn)} bytes behind the source`;
  lines.push([
    "receive",
    `write_lsn ${formatLsn(s.writeLsn)}${behind}; flush_lsn ${formatLsn(s.flushLsn)}, ${
      distance(s.writeLsn, s.flushLsn)
    } bytes not yet durable`,
  ]);
  if (status.spool !== undefined) {
    const { files, bytes, first, last } = status.spool;
    const range = first === undefined || last === undefined
      ? ""
      : `, segments after ${formatLsn(first)} … ${formatLsn(last)}`;
    lines.push(["spool", `${files} files, ${bytes} bytes${range}`]);
  }
  lines.push([
    "apply",
    `${s.apply ? "on" : "off (prefetch)"}, replay_lsn ${formatLsn(s.replayLsn)}, ${
      distance(s.flushLsn, s.replayLsn)
    } bytes behind flush${
      current === undefined ? "" : `, ${distance(current, s.replayLsn)} behind the source`
    }${status.stall ? `; ${stallText(status.stall)}` : ""}`,
  ]);
  lines.push([
    "endpos",
    s.endpos === 0n
      ? "0/0 (none)"
      : `${formatLsn(s.endpos)} (${
        s.replayLsn >= s.endpos ? "reached" : `${distance(s.endpos, s.replayLsn)} bytes to go`
      })`,
  ]);
  lines.push(["startpos", formatLsn(s.startpos)]);
  return lines.map(([name, text]) => `${name.padEnd(9)} ${text}`);
}

function stallText(stall: Stall): string {
  const { seconds, timeout_seconds } = stallJson(stall);
  return `STALLED: replay_lsn has not moved for ${seconds} s (stall timeout ${timeout_seconds} s), apply restarted ${stall.restarts} times`;
}

/** ` (pid N)`, ` (last pid N)`, or each stage's when they differ. */
function processText(status: PipelineStatus): string {
  const stages = status.stages;
  if (stages === undefined || status.pid === undefined) return "";
  const differ = stages.receive.running !== stages.apply.running ||
    (stages.receive.running && stages.receive.pid !== stages.apply.pid);
  if (!differ) {
    return status.state === "running" ? ` (pid ${status.pid})` : ` (last pid ${status.pid})`;
  }
  const one = (stage: StageName) => {
    const p = stages[stage];
    return p.running ? `${stage} pid ${p.pid ?? "?"}` : `${stage} stopped`;
  };
  return ` (${STAGES.map(one).join(", ")})`;
}
