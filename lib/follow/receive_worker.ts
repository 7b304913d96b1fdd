/** The receive stage as a Web Worker (see stage_worker.ts). */
import { runReceive } from "./receive.ts";
import { serveStage } from "./stage_worker.ts";

serveStage(runReceive);
