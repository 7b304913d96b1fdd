/** `pgferry clone`: copy a database (schema, rows, indexes, sequences, large objects). */
import type { CommandSpec, OptionSpec, OptionValues } from "./command.ts";
import {
  dirFrom,
  dirOption,
  filtersFrom,
  filtersOption,
  intOption,
  requiredOption,
  sourceOption,
  stringOption,
  targetOption,
} from "./options.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { OperatorError, UsageError } from "../lib/errors.ts";
import { runClone } from "../lib/clone/clone.ts";
import type { CloneStep } from "../lib/clone/progress.ts";
import {
  formatBytes,
  formatDuration,
  formatTable,
  type ProgressReport,
  readProgress,
  statusLine,
} from "../lib/clone/progress.ts";
import { setLogLevel } from "../lib/log.ts";
import { syncSequences } from "../lib/clone/sequences.ts";
import { cloneFollowOptions, followAlongside, restartStream } from "./follow.ts";

export const tableJobsOption: OptionSpec = {
  name: "table-jobs",
  type: "string",
  value: "N",
  help: "Tables (or table parts) copied at once; also vacuum and large-object jobs",
  env: "PGFERRY_TABLE_JOBS",
  default: "4",
  aliases: ["jobs"],
};

const indexJobsOption: OptionSpec = {
  name: "index-jobs",
  type: "string",
  value: "N",
  help: "CREATE INDEX jobs at once",
  env: "PGFERRY_INDEX_JOBS",
  default: "4",
};

const splitOption: OptionSpec = {
  name: "split-tables-larger-than",
  type: "string",
  value: "SIZE",
  help: "Copy tables larger than SIZE (e.g. 10GB, 512MB) in parts, by key or CTID range; 0: never",
  env: "PGFERRY_SPLIT_TABLES_LARGER_THAN",
  default: "0",
};

const splitMaxPartsOption: OptionSpec = {
  name: "split-max-parts",
  type: "string",
  value: "N",
  help: "At most N parts per split table (default: --table-jobs)",
  env: "PGFERRY_SPLIT_MAX_PARTS",
};

const flag = (name: string, help: string, env?: string): OptionSpec => ({
  name,
  type: "boolean",
  help,
  ...(env ? { env } : {}),
});

const cloneOptions: OptionSpec[] = [
  sourceOption,
  targetOption,
  dirOption,
  tableJobsOption,
  indexJobsOption,
  splitOption,
  splitMaxPartsOption,
  filtersOption,
  flag(
    "drop-if-exists",
    "Drop the target's objects of the same names first",
    "PGFERRY_DROP_IF_EXISTS",
  ),
  flag("no-owner", "Do not set the owners of objects (pg_restore --no-owner)"),
  flag("no-acl", "Do not restore privileges (pg_restore --no-acl)"),
  flag("no-comments", "Do not restore comments"),
  flag("skip-large-objects", "Do not copy the contents of large objects"),
  flag("skip-extensions", "Do not create extensions (they must exist on the target)"),
  flag("skip-vacuum", "Do not VACUUM ANALYZE the copied tables"),
  flag("resume", "Continue an earlier clone in --dir, skipping what is done"),
  flag("restart", "Forget an earlier clone in --dir and start over"),
  flag(
    "not-consistent",
    "Accepted for pgcopydb compatibility: a resumed clone takes a new snapshot",
  ),
  {
    name: "snapshot",
    type: "string",
    value: "ID",
    help:
      'Copy as of this exported snapshot (default: export one, or use the one "pgferry snapshot" holds)',
    env: "PGFERRY_SNAPSHOT",
  },
  {
    name: "copy-format",
    type: "string",
    value: "auto|text",
    help: "auto: binary COPY where every column allows it (same major version); text: always text",
    default: "auto",
  },
  {
    name: "maintenance-work-mem",
    type: "string",
    value: "SIZE",
    help: "maintenance_work_mem of the index builds",
    default: "512MB",
  },
];

/** `10GB`, `512 MB`, `1048576` → bytes. */
export function parseSize(text: string, option: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|k|m|g|t)?\s*$/i.exec(text);
  if (!match) {
    throw new UsageError(`Invalid --${option} "${text}": expected a size like 10GB or 512MB`);
  }
  const unit = (match[2] ?? "b").toLowerCase()[0]!;
  const power = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit] ?? 0;
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** Aborts on Ctrl-C or SIGTERM. */
function abortOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const stop = () =>
    controller.abort(
      new OperatorError("Interrupted", {
        hint: "run the same command with --resume to continue",
      }),
    );
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const sig of signals) Deno.addSignalListener(sig, stop);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const sig of signals) Deno.removeSignalListener(sig, stop);
    },
  };
}

/**
 * On a terminal: one status line redrawn twice a second instead of a log line
 * per finished step (warnings and errors still print).
 */
function liveDisplay(catalog: Catalog): { stop: () => void } {
  const json = /^(true|yes|on|1)$/i.test(Deno.env.get("PGFERRY_LOG_JSON") ?? "");
  if (!Deno.stderr.isTerminal() || json) return { stop: () => {} };
  setLogLevel("warn");
  const encoder = new TextEncoder();
  const started = performance.now();
  const draw = (text: string) => Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${text}`));
  const timer = setInterval(() => {
    try {
      const { line } = statusLine(readProgress(catalog.db), performance.now() - started);
      const width = Deno.consoleSize().columns;
      draw(line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line);
    } catch {
      // the catalog is busy: next tick
    }
  }, 500);
  return {
    stop: () => {
      clearInterval(timer);
      draw("");
      setLogLevel("info");
    },
  };
}

/** The summary printed at the end of a clone: per table, then per step. */
export function summaryLines(report: ProgressReport, durationMs: number): string[] {
  const lines = formatTable(
    ["table", "rows", "bytes", "parts", "copy", "indexes", "index time", "vacuum"],
    report.tables.map((t) => [
      t.table,
      String(t.rows),
      formatBytes(t.bytes),
      String(t.parts),
      formatDuration(t.copyMs),
      String(t.indexes),
      formatDuration(t.indexMs),
      t.vacuumMs === null ? "-" : formatDuration(t.vacuumMs),
    ]),
  );
  lines.push("");
  lines.push(
    ...formatTable(
      ["step", "duration", "detail"],
      report.steps.filter((s) => s.step !== "clone").map((s) => [
        s.step,
        s.durationMs === null ? "-" : formatDuration(s.durationMs),
        s.detail ?? "",
      ]),
    ),
  );
  const t = report.totals;
  lines.push(
    "",
    `${t.tables} tables, ${t.rows} rows, ${formatBytes(t.bytes)}, ${t.indexes} indexes in ${
      formatDuration(durationMs)
    }`,
  );
  return lines;
}

/** Runs a clone, or some of its steps, with the options of the command line. */
async function cloneWith(
  options: OptionValues,
  out: (line: string) => void,
  steps?: ReadonlySet<CloneStep>,
): Promise<void> {
  const resume = steps !== undefined || options["resume"] === true;
  const restart = steps === undefined && options["restart"] === true;
  if (options["resume"] === true && restart) {
    throw new UsageError("--resume and --restart do not go together");
  }
  const tableJobs = intOption(options, "table-jobs", 1, 256) ?? 4;
  const copyFormat = stringOption(options, "copy-format") ?? "auto";
  if (copyFormat !== "auto" && copyFormat !== "text") {
    throw new UsageError(`Invalid --copy-format "${copyFormat}": expected auto or text`);
  }
  const filters = await filtersFrom(options);
  const source = requiredOption(options, "source", "PGFERRY_SOURCE_PGURI");
  const target = requiredOption(options, "target", "PGFERRY_TARGET_PGURI");
  const follow = steps === undefined && options["follow"] === true;
  if (follow && restart) await restartStream(options);
  using catalog = await Catalog.open(dirFrom(options), { create: true });
  const signals = abortOnSignals();
  const display = liveDisplay(catalog);
  const copy = async (snapshot: string | undefined, signal: AbortSignal) => {
    const result = await runClone({
      source,
      target,
      catalog,
      tableJobs,
      indexJobs: intOption(options, "index-jobs", 1, 256) ?? 4,
      split: {
        largerThan: parseSize(
          stringOption(options, "split-tables-larger-than") ?? "0",
          "split-tables-larger-than",
        ),
        maxParts: intOption(options, "split-max-parts", 1, 1024) ?? tableJobs,
      },
      filters,
      copyFormat,
      noOwner: options["no-owner"] === true,
      noAcl: options["no-acl"] === true,
      noComments: options["no-comments"] === true,
      dropIfExists: options["drop-if-exists"] === true,
      skipVacuum: options["skip-vacuum"] === true,
      skipLargeObjects: options["skip-large-objects"] === true,
      skipExtensions: options["skip-extensions"] === true,
      resume,
      restart,
      snapshot,
      maintenanceWorkMem: stringOption(options, "maintenance-work-mem") ?? "512MB",
      steps,
      signal,
    });
    display.stop();
    if (steps === undefined) {
      for (const line of summaryLines(result.report, result.durationMs)) out(line);
    }
  };
  try {
    if (follow) {
      await followAlongside(
        options,
        catalog,
        copy,
        () => syncSequences(source, target, filters),
      );
    } else {
      await copy(stringOption(options, "snapshot"), signals.signal);
    }
  } catch (err) {
    if (signals.signal.aborted) throw signals.signal.reason;
    throw err;
  } finally {
    display.stop();
    signals.dispose();
  }
}

const clone: CommandSpec = {
  path: ["clone"],
  summary: "Copy the source database to the target",
  description: `
Dumps the schema with pg_dump in an exported snapshot, restores its pre-data
section, copies every table with COPY in --table-jobs parallel jobs (largest
first, big tables in parts), builds indexes with --index-jobs as soon as a
table is in, vacuums, copies large objects and sequences, and restores the
post-data section (foreign keys, triggers, …). Progress is kept in the catalog
in --dir: after a failure, run it again with --resume; "pgferry list progress"
shows it from another terminal.
With --follow, the replication slot and the snapshot of the copy are made
together; changes are received into the spool while the copy runs, applied
once it is done, until endpos (--endpos, or "pgferry stream sentinel set
endpos" over SQLite or, with --host/--port, over TCP); the target's sequences
are then set from the source.`,
  options: [...cloneOptions, ...cloneFollowOptions],
  async run({ options, out }) {
    await cloneWith(options, out);
  },
};

/** The options of the building blocks: those of clone, without --resume and --restart. */
const stepOptions = cloneOptions.filter((o) =>
  !["resume", "restart", "not-consistent"].includes(o.name)
);

function stepCommand(
  path: string[],
  summary: string,
  steps: CloneStep[],
  description: string,
): CommandSpec {
  return {
    path,
    summary,
    description: `${description}
One step of "pgferry clone", for running it piece by piece in the same --dir
(progress carries over as with --resume). Steps that read rows use the
snapshot "pgferry snapshot" holds in --dir, when it runs, else their own.`,
    options: stepOptions,
    async run({ options, out }) {
      await cloneWith(options, out, new Set(steps));
    },
  };
}

const buildingBlocks: CommandSpec[] = [
  stepCommand(
    ["dump", "schema"],
    "Dump the source's pre-data and post-data sections into --dir",
    ["dump-schema"],
    "Runs pg_dump --format=custom --section=pre-data --section=post-data.",
  ),
  stepCommand(
    ["restore", "pre-data"],
    "Restore the pre-data section of the dump on the target",
    ["pre-data"],
    "Creates types, functions, tables, … filtered by --filters, in one transaction.",
  ),
  stepCommand(
    ["copy", "table-data"],
    "Copy the rows of every table (no indexes)",
    ["copy"],
    "COPY in --table-jobs parallel jobs, largest first, big tables in parts.",
  ),
  stepCommand(
    ["copy", "indexes"],
    "Build the indexes and constraints of the copied tables, then vacuum them",
    ["indexes", "vacuum"],
    "Primary keys and unique constraints as a unique index, then ADD CONSTRAINT USING INDEX.",
  ),
  stepCommand(
    ["copy", "constraints"],
    "Same as copy indexes: constraints are built with their indexes",
    ["indexes", "vacuum"],
    "Primary keys and unique constraints as a unique index, then ADD CONSTRAINT USING INDEX.",
  ),
  stepCommand(
    ["copy", "sequences"],
    "Set the target's sequences to the source's values",
    ["sequences"],
    "Reads last_value and is_called on the source; setval on the target.",
  ),
  stepCommand(
    ["copy", "blobs"],
    "Copy the contents of the large objects",
    ["large-objects"],
    "The large objects themselves are created by restore pre-data.",
  ),
  stepCommand(
    ["restore", "post-data"],
    "Restore what is left of the post-data section (foreign keys, triggers, …)",
    ["post-data"],
    "Leaves out the indexes and constraints that copy indexes builds.",
  ),
];

/** The clone command. */
export const cloneCommands: CommandSpec[] = [clone, ...buildingBlocks];
