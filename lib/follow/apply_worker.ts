/** The apply stage as a Web Worker (see stage_worker.ts). */
import { runApply } from "./apply.ts";
import { serveStage } from "./stage_worker.ts";

serveStage(runApply);
