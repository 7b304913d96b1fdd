/** Runs pgferry as a separate process, the way an operator does. */
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `deno run -A main.ts …args`, with extra environment variables; waits for the
 * exit, and kills the child and throws (with its stderr) after `timeoutMs`.
 */
export async function pgferry(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 300_000,
): Promise<Run> {
  const child = spawnPgferry(args, env);
  const run = await child.exit(timeoutMs, args);
  return { code: run.code, stdout: run.stdout, stderr: run.stderr };
}

/**
 * A pgferry child process whose stderr is read as it comes (kept in memory), so a
 * long-running child never blocks on a full pipe; stdout stays a stream for the caller.
 */
export class Spawned {
  readonly #child: Deno.ChildProcess;
  readonly #stderr: Promise<string>;
  #stderrSoFar = "";
  #exited = false;

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
    child.status.then(() => this.#exited = true);
    this.#stderr = (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderrSoFar += text;
      }
      return this.#stderrSoFar;
    })();
  }

  get pid(): number {
    return this.#child.pid;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }

  get stdout(): ReadableStream<Uint8Array> {
    return this.#child.stdout;
  }

  /** Whether the child has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** What the child wrote to stderr so far. */
  get stderrSoFar(): string {
    return this.#stderrSoFar;
  }

  /** Sends a signal; a child that has exited already is left alone. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
  }

  /** Waits for the exit; after `ms`, kills the child and throws with what it wrote to stderr. */
  async exit(
    ms = 120_000,
    args?: string[],
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), ms)
    );
    const done = this.output();
    const first = await Promise.race([done, timeout]);
    clearTimeout(timer);
    if (first !== "timeout") return first;
    this.kill("SIGKILL");
    const what = args === undefined ? "pgferry" : `pgferry ${args.join(" ")}`;
    throw new Error(`${what} did not exit within ${ms} ms:\n${(await done).stderr}`);
  }

  /** Waits for the exit: code, signal, stdout and the whole of stderr. */
  async output(): Promise<
    { code: number; signal: Deno.Signal | null; stdout: string; stderr: string }
  > {
    const [status, stdout, stderr] = await Promise.all([
      this.#child.status,
      // A caller that reads stdout itself keeps it; the output then has none.
      this.#child.stdout.locked ? "" : new Response(this.#child.stdout).text().catch(() => ""),
      this.#stderr,
    ]);
    return { code: status.code, signal: status.signal, stdout, stderr };
  }
}

/** Starts pgferry in the background; the caller waits for or kills the child. */
export function spawnPgferry(args: string[], env: Record<string, string> = {}): Spawned {
  return new Spawned(
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
}
