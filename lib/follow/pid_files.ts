/**
 * `<dir>/receive.pid` and `<dir>/apply.pid`: which process runs each stage on
 * this work directory (follow runs both; `stream receive` and `stream apply`
 * may run one each, in separate processes).
 *
 * A process writes its pid in the file of each stage it runs and holds an
 * exclusive flock on it while it runs. Whether a stage runs is answered by the
 * lock, not by the pid: the kernel drops the lock when the process dies, even
 * under kill -9, so a stale file (or a recycled pid) never reads as running. A
 * flock is seen by every process on the host, other containers sharing the
 * volume included.
 */
import { join } from "node:path";
import { OperatorError } from "../errors.ts";

/** A pipeline stage that runs in its own Worker (supervisor.ts's StageName). */
export type StageName = "receive" | "apply";

/** The stages, in the order their files are locked. */
export const STAGES: readonly StageName[] = ["receive", "apply"];

/** Where the pid file of a stage lives. */
export function pidPath(dir: string, stage: StageName): string {
  return join(dir, `${stage}.pid`);
}

/** What a stage's pid file says. */
export interface StageProcess {
  /** Whether a process holds the file's lock now. */
  running: boolean;
  /** The pid in the file: the running process, or the last one (undefined: no file). */
  pid: number | undefined;
}

const ACQUIRE_TRIES = 20;

/**
 * Marks `stages` of `dir` as run by this process until the result is disposed.
 * Fails when another live process runs one of them: two receivers would write
 * one spool, two appliers would race on one origin.
 */
export async function holdPidFiles(dir: string, stages: StageName[]): Promise<Disposable> {
  const held: { path: string; file: Deno.FsFile }[] = [];
  const release = () => {
    for (const { path, file } of held.reverse()) {
      try {
        Deno.removeSync(path);
      } catch {
        // already gone
      }
      file.close(); // drops the lock
    }
  };
  try {
    for (const stage of STAGES.filter((s) => stages.includes(s))) {
      const path = pidPath(dir, stage);
      const file = await Deno.open(path, { read: true, write: true, create: true });
      // A status or restore check holds a shared lock for an instant: try a few times.
      let locked = false;
      for (let i = 0; i < ACQUIRE_TRIES && !locked; i++) {
        locked = await file.tryLock(true);
        if (!locked) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (!locked) {
        file.close();
        const pid = parsePid(await Deno.readTextFile(path).catch(() => ""));
        throw new OperatorError(
          `Another pgferry process${
            pid ? ` (pid ${pid})` : ""
          } runs the ${stage} stage on "${dir}"`,
          { hint: "stop it first, or give this one its own --dir" },
        );
      }
      held.push({ path, file });
      await file.truncate(0);
      await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    }
  } catch (err) {
    release();
    throw err;
  }
  return { [Symbol.dispose]: release };
}

/** Which stages run on `dir` now, and by which pid. */
export async function readPidFiles(dir: string): Promise<Record<StageName, StageProcess>> {
  const entries = await Promise.all(
    STAGES.map(async (stage) => [stage, await readPidFile(pidPath(dir, stage))] as const),
  );
  return Object.fromEntries(entries) as Record<StageName, StageProcess>;
}

async function readPidFile(path: string): Promise<StageProcess> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { running: false, pid: undefined };
    throw err;
  }
  try {
    const free = await file.tryLock(false);
    const pid = parsePid(await Deno.readTextFile(path).catch(() => ""));
    return { running: !free, pid };
  } finally {
    file.close();
  }
}

function parsePid(text: string): number | undefined {
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}
