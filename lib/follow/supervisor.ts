/**
 * The follow supervisor, on the main thread: starts the receive and apply
 * stages as Web Workers, restarts one that fails with a transient error (with
 * backoff) or an apply stage the watchdog finds stuck, stops everything with a
 * clear message on a permanent one, polls the sentinel to see endpos reached,
 * and serves the coordinator and the metrics when asked.
 */
import type { Catalog } from "../catalog/catalog.ts";
import { readSentinel } from "../catalog/sentinel_store.ts";
import { OperatorError } from "../errors.ts";
import { formatLsn } from "../lsn.ts";
import { logger } from "../log.ts";
import { Coordinator, type CoordinatorOptions } from "../sentinel/coordinator.ts";
import type { StreamState } from "../sentinel/codec.ts";
import type { Plugin } from "./decoder_for.ts";
import { holdPidFiles } from "./pid_files.ts";
import { Retention, type RetentionOptions } from "./retention.ts";
import { pruneSpool } from "../spool/prune.ts";
import type { StageMessage, StageReport } from "./stage_worker.ts";
import { type MetricsDelta, MetricsRegistry } from "./metrics.ts";
import { type MetricsEndpoint, MetricsServer } from "./metrics_server.ts";
import { Watchdog } from "./watchdog.ts";
import type { Filters } from "../clone/filters.ts";

const log = logger("follow");

export type StageName = "receive" | "apply";

export interface FollowOptions {
  dir: string;
  catalog: Catalog;
  source: string;
  target: string;
  slot: string;
  origin: string;
  plugin: Plugin;
  publication: string;
  /** Which stages run: both for follow/replay, one for receive or apply alone. */
  stages: StageName[];
  /** Serve the sentinel over TCP while following. */
  coordinator?: Omit<CoordinatorOptions, "catalog" | "state">;
  signal?: AbortSignal;
  segmentSize?: number | undefined;
  /** Leave out the changes of the tables these filters leave out. */
  filters?: Filters | undefined;
  /** Stop when a stage has kept failing (retryable errors) this long; 0 or unset: never. */
  retryTimeoutMs?: number | undefined;
  /** Automatic spool pruning and size warnings. */
  retention?: RetentionOptions;
  /** Serve Prometheus metrics at http://host:port/metrics. */
  metrics?: MetricsEndpoint | undefined;
  /** Restart apply when replay_lsn stays put this long with changes waiting (default 60 s; 0: never). */
  stallTimeoutMs?: number | undefined;
}

const WORKER_URLS: Record<StageName, URL> = {
  receive: new URL("./receive_worker.ts", import.meta.url),
  apply: new URL("./apply_worker.ts", import.meta.url),
};

const MAX_BACKOFF_MS = 30_000;
/** A stage that ran this long before failing starts its backoff over. */
const STABLE_MS = 10_000;
const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** One stage's worker, restarted on transient failures. */
class Stage {
  readonly name: StageName;
  readonly #options: Record<string, unknown>;
  readonly #onMetrics: (delta: MetricsDelta) => void;
  #worker: Worker | undefined;
  #ended: Promise<StageReport> | undefined;
  restarts = 0;
  /** Failures since the stage last ran for STABLE_MS: what the backoff grows with. */
  failuresInARow = 0;
  startedAt = 0;
  /** When the current run of failures began (0: none). */
  failingSince = 0;

  constructor(
    name: StageName,
    options: Record<string, unknown>,
    onMetrics: (delta: MetricsDelta) => void,
  ) {
    this.name = name;
    this.#options = options;
    this.#onMetrics = onMetrics;
  }

  /** Starts the worker; the promise settles with its report. */
  start(): Promise<StageReport> {
    this.startedAt = Date.now();
    const worker = new Worker(WORKER_URLS[this.name].href, { type: "module", name: this.name });
    this.#worker = worker;
    this.#ended = new Promise<StageReport>((resolve) => {
      worker.onmessage = (event) => {
        const message = event.data as StageMessage;
        if (message.type === "metrics") this.#onMetrics(message.delta);
        else resolve(message);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        resolve({ type: "error", message: event.message, code: undefined, errorClass: "fatal" });
      };
    }).finally(() => worker.terminate());
    worker.postMessage({ type: "start", options: this.#options });
    return this.#ended;
  }

  /** Asks the worker to stop and waits for it (terminating it after a grace period). */
  async stop(): Promise<void> {
    if (this.#worker === undefined || this.#ended === undefined) return;
    this.#worker.postMessage({ type: "stop" });
    const grace = new Promise((resolve) => setTimeout(resolve, 10_000));
    await Promise.race([this.#ended, grace]);
    this.#worker.terminate();
  }
}

/** Runs the stages until endpos is reached, the signal aborts, or a permanent error. */
export async function runFollow(options: FollowOptions): Promise<void> {
  const { catalog, signal } = options;
  const first = readSentinel(catalog.db);
  const target = options.stages.includes("apply") ? "replay" : "write";
  if (first.endpos !== 0n && reached(first, target)) {
    log.info(`endpos ${formatLsn(first.endpos)} already reached: nothing to do`);
    return;
  }
  using _pids = await holdPidFiles(options.dir, options.stages);
  const registry = new MetricsRegistry();
  const watchdog = options.stages.includes("apply")
    ? new Watchdog(options.dir, options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS)
    : undefined;
  await using _metrics = options.metrics
    ? MetricsServer.start(options.metrics, { ...options, registry, watchdog })
    : undefined;
  let state: StreamState = "init";
  const coordinator = options.coordinator
    ? Coordinator.start({
      ...options.coordinator,
      catalog,
      state: () => state,
      cleanup: (dryRun) => pruneSpool(options.dir, readSentinel(catalog.db).replayLsn, { dryRun }),
      onRequest: (type, result) =>
        registry.inc("pgferry_coordinator_requests_total", { type: snakeCase(type), result }),
    })
    : undefined;
  const retention = new Retention(options, options.retention);
  const stageOptions = {
    dir: options.dir,
    source: options.source,
    target: options.target,
    slot: options.slot,
    origin: options.origin,
    plugin: options.plugin,
    publication: options.publication,
    ...(options.segmentSize ? { segmentSize: options.segmentSize } : {}),
    ...(options.filters ? { filters: options.filters } : {}),
  };
  const stages = options.stages.map((name) =>
    new Stage(name, stageOptions, (delta) => {
      registry.add(delta);
      if (name === "apply" && delta.progressed) watchdog?.alive();
    })
  );
  for (const stage of stages) {
    registry.inc("pgferry_stage_restarts_total", { stage: stage.name }, 0);
  }
  const running = new Map<Stage, Promise<StageReport>>();
  const relaunches = new Map<Stage, ReturnType<typeof setTimeout>>();
  let failure: OperatorError | undefined;
  const stopAll = new AbortController();
  const onAbort = () => stopAll.abort();
  signal?.addEventListener("abort", onAbort, { once: true });

  const launch = (stage: Stage) => {
    running.set(stage, stage.start());
    if (stage.name === "apply") watchdog?.alive();
  };
  const restarted = (stage: Stage) => {
    stage.restarts++;
    registry.inc("pgferry_stage_restarts_total", { stage: stage.name });
  };
  try {
    stages.forEach(launch);
    state = "streaming";
    while (!stopAll.signal.aborted) {
      const tick = new Promise<"tick">((resolve) => setTimeout(() => resolve("tick"), 200));
      const outcome = await Promise.race([
        tick,
        ...[...running].map(([stage, p]) => p.then((report) => ({ stage, report }))),
      ]);
      if (outcome === "tick") {
        retention.tick();
        const sentinel = readSentinel(catalog.db);
        if (sentinel.endpos !== 0n && reached(sentinel, target)) break;
        const apply = stages.find((stage) => stage.name === "apply");
        if (apply && running.has(apply) && watchdog?.check(sentinel)) {
          running.delete(apply);
          restarted(apply);
          await apply.stop();
          if (!stopAll.signal.aborted) launch(apply);
        }
        continue;
      }
      const { stage, report } = outcome;
      running.delete(stage);
      if (report.type === "done" && report.end === "endpos") {
        log.info(`${stage.name} reached endpos`);
        if (stage.name === "apply" || !options.stages.includes("apply")) break;
        continue;
      }
      if (report.type === "error") {
        registry.inc("pgferry_errors_total", { stage: stage.name, class: report.errorClass });
      }
      if (report.type === "done" || report.errorClass === "retryable") {
        const why = report.type === "done" ? "the stream ended" : report.message;
        if (Date.now() - stage.startedAt >= STABLE_MS) {
          stage.failuresInARow = 0;
          stage.failingSince = 0;
        }
        if (stage.failingSince === 0) stage.failingSince = Date.now();
        const failingMs = Date.now() - stage.failingSince;
        if (options.retryTimeoutMs && failingMs > options.retryTimeoutMs) {
          failure = new OperatorError(
            `The ${stage.name} stage kept failing for ${Math.round(failingMs / 1000)} s: ${why}`,
            {
              hint:
                "fix the cause (the log has each attempt), then run the same command with --resume",
            },
          );
          state = "error";
          break;
        }
        const backoff = 500 * 2 ** Math.min(stage.failuresInARow, 6);
        const jittered = Math.min(
          MAX_BACKOFF_MS,
          Math.round(backoff * (0.75 + Math.random() * 0.5)),
        );
        stage.failuresInARow++;
        restarted(stage);
        log.warn(`${stage.name} stopped, restarting in ${jittered} ms: ${why}`, {
          code: report.type === "error" ? report.code : undefined,
          restarts: stage.restarts,
        });
        // The loop goes on meanwhile: endpos, retention, the watchdog and the other stage.
        relaunches.set(
          stage,
          setTimeout(() => {
            relaunches.delete(stage);
            if (!stopAll.signal.aborted) launch(stage);
          }, jittered),
        );
        continue;
      }
      failure = new OperatorError(`The ${stage.name} stage stopped: ${report.message}`, {
        hint: report.errorClass === "permission"
          ? "grant the missing privilege, then run the same command with --resume"
          : "fix the cause, then run the same command with --resume: it continues where it stopped",
      });
      state = "error";
      break;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    for (const timer of relaunches.values()) clearTimeout(timer);
    await Promise.all(stages.map((stage) => stage.stop()));
    if (state !== "error") state = "done";
    await coordinator?.close();
    await retention.close();
    watchdog?.close();
  }
  if (failure) throw failure;
  const sentinel = readSentinel(catalog.db);
  log.info(
    `stopped: write_lsn ${formatLsn(sentinel.writeLsn)}, replay_lsn ${
      formatLsn(sentinel.replayLsn)
    }`,
  );
}

/** `QuerySentinel` → `query_sentinel`, for a label value. */
function snakeCase(name: string): string {
  return name.replace(/[a-z0-9][A-Z]/g, (pair) => `${pair[0]}_${pair[1]}`).toLowerCase();
}

function reached(
  sentinel: { endpos: bigint; replayLsn: bigint; writeLsn: bigint },
  target: "replay" | "write",
): boolean {
  return (target === "replay" ? sentinel.replayLsn : sentinel.writeLsn) >= sentinel.endpos;
}
