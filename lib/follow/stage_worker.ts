/**
 * What runs inside a stage's Web Worker: wait for "start", run the stage with
 * its own catalog connection, report how it ended, stop on "stop".
 *
 * main → worker   { type: "start", options }  |  { type: "stop" }
 * worker → main   { type: "done", end }        |  { type: "error", message, code, errorClass }
 */
import { Catalog } from "../catalog/catalog.ts";
import { errorMessage } from "../errors.ts";
import { classifyPgError, type ErrorClass, errorCode } from "../pg/classify.ts";
import { maskPasswordsIn } from "../pg/uri.ts";

/** What a stage worker reports to the supervisor. */
export type StageReport =
  | { type: "done"; end: string }
  | { type: "error"; message: string; code: string | undefined; errorClass: ErrorClass };

/** Options every stage gets: the work directory; the rest is the stage's own. */
export interface StageOptions {
  dir: string;
}

type WorkerScope = {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(m: StageReport): void;
};

/** Serves one stage in this worker. */
export function serveStage<O extends StageOptions>(
  run: (options: O & { catalog: Catalog; signal: AbortSignal }) => Promise<string>,
): void {
  const scope = self as unknown as WorkerScope;
  const controller = new AbortController();
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as { type: "start"; options: O } | { type: "stop" };
    if (message.type === "stop") {
      controller.abort();
      return;
    }
    let report: StageReport;
    let catalog: Catalog | undefined;
    try {
      catalog = await Catalog.open(message.options.dir);
      const end = await run({ ...message.options, catalog, signal: controller.signal });
      report = { type: "done", end };
    } catch (err) {
      report = {
        type: "error",
        message: maskPasswordsIn(errorMessage(err)),
        code: errorCode(err),
        errorClass: classifyPgError(err),
      };
    } finally {
      catalog?.close();
    }
    scope.postMessage(report);
  };
}
