/**
 * What runs inside a stage's Web Worker: wait for "start", run the stage with
 * its own catalog connection, post its counters at most once a second, report
 * how it ended, stop on "stop".
 *
 * main → worker   { type: "start", options }  |  { type: "stop" }
 * worker → main   { type: "metrics", delta }  (any number of times, then one of)
 *                 { type: "done", end }        |  { type: "error", message, code, errorClass }
 */
import { Catalog } from "../catalog/catalog.ts";
import { errorMessage } from "../errors.ts";
import { classifyPgError, type ErrorClass, errorCode } from "../pg/classify.ts";
import { maskPasswordsIn } from "../pg/uri.ts";
import { type MetricsDelta, StageCounters } from "./metrics.ts";

/** How a stage worker ended. */
export type StageReport =
  | { type: "done"; end: string }
  | { type: "error"; message: string; code: string | undefined; errorClass: ErrorClass };

/** What a stage worker posts to the supervisor. */
export type StageMessage = StageReport | { type: "metrics"; delta: MetricsDelta };

/** Options every stage gets: the work directory; the rest is the stage's own. */
export interface StageOptions {
  dir: string;
}

/** What serveStage adds to a stage's options. */
export interface StageContext {
  catalog: Catalog;
  signal: AbortSignal;
  counters: StageCounters;
}

type WorkerScope = {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: StageMessage): void;
};

const POST_METRICS_MS = 1000;

/** Serves one stage in this worker. */
export function serveStage<O extends StageOptions>(
  run: (options: O & StageContext) => Promise<string>,
): void {
  const scope = self as unknown as WorkerScope;
  const controller = new AbortController();
  const counters = new StageCounters();
  const postMetrics = () => {
    const delta = counters.drain();
    if (delta !== undefined) scope.postMessage({ type: "metrics", delta });
  };
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as { type: "start"; options: O } | { type: "stop" };
    if (message.type === "stop") {
      controller.abort();
      return;
    }
    let report: StageReport;
    let catalog: Catalog | undefined;
    const timer = setInterval(postMetrics, POST_METRICS_MS);
    try {
      catalog = await Catalog.open(message.options.dir);
      const end = await run({ ...message.options, catalog, signal: controller.signal, counters });
      report = { type: "done", end };
    } catch (err) {
      report = {
        type: "error",
        message: maskPasswordsIn(errorMessage(err)),
        code: errorCode(err),
        errorClass: classifyPgError(err),
      };
    } finally {
      clearInterval(timer);
      catalog?.close();
    }
    postMetrics();
    scope.postMessage(report);
  };
}
