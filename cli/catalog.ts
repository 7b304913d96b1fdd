/**
 * `pgferry catalog backup|restore`: a consistent copy of the live catalog, and
 * putting one back after checking it.
 */
import type { CommandSpec } from "./command.ts";
import { dirFrom, dirOption } from "./options.ts";
import { backupCatalog, restoreCatalog } from "../lib/catalog/backup.ts";
import { OperatorError } from "../lib/errors.ts";
import { readPidFiles, STAGES } from "../lib/follow/pid_files.ts";

const backup: CommandSpec = {
  path: ["catalog", "backup"],
  summary: "Copy the catalog to FILE, consistently, even while the pipeline runs",
  args: "FILE",
  minArgs: 1,
  maxArgs: 1,
  description: `
Uses SQLite's VACUUM INTO on a read-only connection: a snapshot of one moment,
taken without stopping or slowing the workers. FILE must not exist; it appears
only once complete.`,
  options: [dirOption],
  async run({ options, args, out }) {
    const info = await backupCatalog(dirFrom(options), args[0]!);
    out(
      `backed up the catalog to "${info.path}": ${info.bytes} bytes, schema version ${info.schemaVersion}`,
    );
  },
};

const restore: CommandSpec = {
  path: ["catalog", "restore"],
  summary: "Check a catalog backup and put it in place as the catalog of --dir",
  args: "FILE",
  minArgs: 1,
  maxArgs: 1,
  description: `
Checks FILE first (PRAGMA quick_check, a schema version this pgferry knows;
an older one is migrated at the next run), then copies it in under the
catalog write lock. Refuses while follow (or stream receive or apply) runs
on --dir. A damaged
catalog that SQLite cannot write over is kept aside as catalog.db.damaged-*.`,
  options: [dirOption],
  async run({ options, args, out }) {
    const dir = dirFrom(options);
    const result = await restoreCatalog(dir, args[0]!, {
      async beforeReplace() {
        const stages = await readPidFiles(dir);
        const stage = STAGES.find((name) => stages[name].running);
        if (stage !== undefined) {
          const pid = stages[stage].pid;
          throw new OperatorError(
            `Cannot restore the catalog of "${dir}": pgferry${
              pid ? ` (pid ${pid})` : ""
            } runs its ${stage} stage`,
            { hint: "stop it first (Ctrl-C or SIGTERM), restore, then run it again with --resume" },
          );
        }
      },
    });
    out(`restored "${args[0]}" as "${result.path}": schema version ${result.schemaVersion}`);
    if (result.movedAside) out(`the damaged catalog was kept as "${result.movedAside}"`);
  },
};

/** `catalog backup` and `catalog restore`. */
export const catalogCommands: CommandSpec[] = [backup, restore];
