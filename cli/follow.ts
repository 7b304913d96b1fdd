/**
 * `pgferry follow` and the `stream` commands that set up, run and tear down
 * the change-data-capture pipeline.
 */
import type { CommandSpec, OptionSpec, OptionValues } from "./command.ts";
import {
  dirFrom,
  dirOption,
  filtersFrom,
  filtersOption,
  intOption,
  listenHostOption,
  listenPortOption,
  lsnArgument,
  requiredOption,
  sizeOption,
  sourceOption,
  stringOption,
  targetOption,
} from "./options.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { updateSentinel } from "../lib/catalog/sentinel_store.ts";
import { OperatorError, UsageError } from "../lib/errors.ts";
import { formatLsn } from "../lib/lsn.ts";
import { type Plugin, PLUGINS } from "../lib/follow/decoder_for.ts";
import { cleanupStream, heldSlot, readSetup, setupStream } from "../lib/follow/setup.ts";
import { holdSnapshot } from "../lib/follow/hold_snapshot.ts";
import { snapshotUsable } from "../lib/clone/export_snapshot.ts";
import { hasCloneProgress, stepDone } from "../lib/clone/progress.ts";
import { runFollow, type StageName } from "../lib/follow/supervisor.ts";
import { loadSecret } from "../lib/sentinel/secret.ts";
import { logger } from "../lib/log.ts";

const log = logger("clone");

export const pluginOption: OptionSpec = {
  name: "plugin",
  type: "string",
  value: "NAME",
  help: `Logical decoding output plugin: ${PLUGINS.join(", ")}`,
  env: "PGFERRY_OUTPUT_PLUGIN",
  default: "pgoutput",
};
export const slotOption: OptionSpec = {
  name: "slot-name",
  type: "string",
  value: "NAME",
  help: "Replication slot on the source",
  default: "pgferry",
};
export const originOption: OptionSpec = {
  name: "origin",
  type: "string",
  value: "NAME",
  help: "Replication origin on the target (tracks what has been applied)",
  default: "pgferry",
};
const publicationOption: OptionSpec = {
  name: "publication",
  type: "string",
  value: "NAME",
  help: "pgoutput publication to use (default: one named after the slot, for all tables)",
};
const endposOption: OptionSpec = {
  name: "endpos",
  type: "string",
  value: "LSN",
  help: "Stop once every transaction up to LSN is applied",
};
const resumeOption: OptionSpec = {
  name: "resume",
  type: "boolean",
  help: "Continue an earlier run: reuse slot, origin and spool",
};
const restartOption: OptionSpec = {
  name: "restart",
  type: "boolean",
  help: "Start over: drop slot, origin and spool of an earlier run first",
};
const secretFileOption: OptionSpec = {
  name: "secret-file",
  type: "string",
  value: "FILE",
  help: "Shared secret of the coordinator (else PGFERRY_SECRET)",
};
const insecureOption: OptionSpec = {
  name: "insecure",
  type: "boolean",
  help: "Allow the coordinator on a non-loopback address without a secret",
};
const tlsCertOption: OptionSpec = {
  name: "tls-cert",
  type: "string",
  value: "FILE",
  help: "Serve the coordinator over TLS with this certificate (PEM)",
};
const tlsKeyOption: OptionSpec = {
  name: "tls-key",
  type: "string",
  value: "FILE",
  help: "The private key of --tls-cert (PEM)",
};
const segmentSizeOption: OptionSpec = {
  name: "spool-segment-size",
  type: "string",
  value: "BYTES",
  help: "Rotate spool segments at the first commit past this size",
  default: String(2 ** 30),
};

const pruneIntervalOption: OptionSpec = {
  name: "prune-interval",
  type: "string",
  value: "SECONDS",
  help: "Delete spool files already applied (up to replay_lsn) this often; 0: only by stream prune",
  default: "30",
};
const spoolWarnSizeOption: OptionSpec = {
  name: "spool-warn-size",
  type: "string",
  value: "SIZE",
  help: "Log a warning when the spool's files take more than SIZE",
  default: "10GiB",
};
const slotWarnSizeOption: OptionSpec = {
  name: "slot-warn-size",
  type: "string",
  value: "SIZE",
  help: "Log a warning when the source's slot retains more than SIZE of WAL",
  default: "10GiB",
};

const retryTimeoutOption: OptionSpec = {
  name: "retry-timeout",
  type: "string",
  value: "SECONDS",
  help: "Stop when a stage keeps failing with transient errors this long; 0: retry forever",
  env: "PGFERRY_RETRY_TIMEOUT",
  default: "3600",
};

/** Retry and spool retention options of a follow process (also for clone --follow). */
export const retentionOptions: OptionSpec[] = [
  retryTimeoutOption,
  pruneIntervalOption,
  spoolWarnSizeOption,
  slotWarnSizeOption,
];

/** Spool retention settings from `retentionOptions`. */
export function retentionFrom(options: OptionValues) {
  return {
    intervalMs: (intOption(options, "prune-interval", 0, 86400) ?? 30) * 1000,
    spoolWarnBytes: sizeOption(options, "spool-warn-size"),
    slotWarnBytes: sizeOption(options, "slot-warn-size"),
  };
}

const metricsPortOption: OptionSpec = {
  name: "metrics-port",
  type: "string",
  value: "PORT",
  help: "Serve Prometheus metrics at http://HOST:PORT/metrics",
  env: "PGFERRY_METRICS_PORT",
};
const metricsHostOption: OptionSpec = {
  name: "metrics-host",
  type: "string",
  value: "HOST",
  help: "The address (HOST) the metrics are served on",
  env: "PGFERRY_METRICS_HOST",
  default: "127.0.0.1",
};
const stallTimeoutOption: OptionSpec = {
  name: "stall-timeout",
  type: "string",
  value: "SECONDS",
  help: "Restart apply when replay_lsn stays still this long while changes wait; 0: never",
  env: "PGFERRY_STALL_TIMEOUT",
  default: "60",
};

/** Metrics and the apply watchdog of a follow process (also for clone --follow). */
export const monitoringOptions: OptionSpec[] = [
  metricsPortOption,
  metricsHostOption,
  stallTimeoutOption,
];

/** Metrics endpoint (when --metrics-port is set) and stall timeout from `monitoringOptions`. */
export function monitoringFrom(options: OptionValues) {
  const port = intOption(options, "metrics-port", 0, 65535);
  return {
    metrics: port === undefined
      ? undefined
      : { host: stringOption(options, "metrics-host") ?? "127.0.0.1", port },
    stallTimeoutMs: (intOption(options, "stall-timeout", 0, 86400) ?? 60) * 1000,
  };
}

/** The options that start the coordinator inside a follow process. */
export const coordinatorOptions: OptionSpec[] = [
  listenHostOption,
  listenPortOption,
  secretFileOption,
  insecureOption,
  tlsCertOption,
  tlsKeyOption,
];

export const streamOptions: OptionSpec[] = [
  sourceOption,
  targetOption,
  dirOption,
  pluginOption,
  slotOption,
  originOption,
  publicationOption,
];

/** What runFollow takes from the command line besides the stream's names. */
async function followSettings(options: OptionValues) {
  const coordinator = await coordinatorFrom(options);
  return {
    segmentSize: intOption(options, "spool-segment-size", 4096, 2 ** 40),
    filters: await filtersFrom(options),
    retryTimeoutMs: (intOption(options, "retry-timeout", 0, 10 ** 7) ?? 3600) * 1000,
    retention: retentionFrom(options),
    ...monitoringFrom(options),
    ...(coordinator ? { coordinator } : {}),
  };
}

/** The --plugin option, checked. */
export function pluginFrom(options: OptionValues): Plugin {
  const plugin = stringOption(options, "plugin") ?? "pgoutput";
  if (!(PLUGINS as readonly string[]).includes(plugin)) {
    throw new UsageError(`Invalid --plugin "${plugin}": expected one of ${PLUGINS.join(", ")}`);
  }
  return plugin as Plugin;
}

function names(options: OptionValues) {
  const slot = stringOption(options, "slot-name") ?? "pgferry";
  return {
    slot,
    origin: stringOption(options, "origin") ?? "pgferry",
    publication: stringOption(options, "publication") ?? slot,
  };
}

/** The coordinator's settings, when --host/--port (or their environment twins) ask for one. */
export async function coordinatorFrom(options: OptionValues) {
  const host = stringOption(options, "host");
  const port = intOption(options, "port", 0, 65535);
  if (host === undefined && port === undefined) return undefined;
  const certFile = stringOption(options, "tls-cert");
  const keyFile = stringOption(options, "tls-key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  const listenHost = host ?? "127.0.0.1";
  return {
    host: listenHost,
    port: port ?? 5442,
    secret: await loadSecret(stringOption(options, "secret-file")),
    insecure: options["insecure"] === true,
    tls: certFile && keyFile
      ? { cert: await Deno.readTextFile(certFile), key: await Deno.readTextFile(keyFile) }
      : undefined,
  };
}

/** What `clone --follow` adds to clone's options. */
export const cloneFollowOptions: OptionSpec[] = [
  { name: "follow", type: "boolean", help: "Keep the target following the source after the copy" },
  pluginOption,
  slotOption,
  originOption,
  publicationOption,
  endposOption,
  segmentSizeOption,
  ...retentionOptions,
  ...monitoringOptions,
  ...coordinatorOptions,
];

/** `--restart` of a streaming command: drops slot, publication and origin, and the work directory. */
export async function restartStream(options: OptionValues): Promise<void> {
  await cleanupStream(
    requiredOption(options, "source", "PGFERRY_SOURCE_PGURI"),
    stringOption(options, "target"),
    names(options),
  );
  await Deno.remove(dirFrom(options), { recursive: true }).catch(() => {});
}

/**
 * `clone --follow`: makes the slot and its exported snapshot together, runs
 * `copy` in that snapshot while the follow stages receive changes (apply off),
 * releases the snapshot, switches apply on, follows until endpos, and sets the
 * target's sequences from the source (logical decoding does not carry them).
 */
export async function followAlongside(
  options: OptionValues,
  catalog: Catalog,
  copy: (snapshot: string | undefined, signal: AbortSignal) => Promise<void>,
  syncSequences: () => Promise<number>,
): Promise<void> {
  const dir = dirFrom(options);
  const source = requiredOption(options, "source", "PGFERRY_SOURCE_PGURI");
  const target = requiredOption(options, "target", "PGFERRY_TARGET_PGURI");
  const plugin = pluginFrom(options);
  const wanted = { source, target, plugin, ...names(options) };
  const settings = await followSettings(options);
  const holder = new AbortController();
  let holding: Promise<void> | undefined;
  let snapshot: string | undefined;
  const recorded = readSetup(catalog);
  const held = heldSlot(catalog);
  if (recorded === undefined && held?.slot === wanted.slot && held.snapshot) {
    // "pgferry snapshot --follow" made the slot and holds its snapshot.
    if (!(await snapshotUsable(source, held.snapshot))) {
      throw new OperatorError(`The snapshot "${held.snapshot}" of slot "${held.slot}" is gone`, {
        hint: "run it again with --restart",
      });
    }
    snapshot = held.snapshot;
    await setupStream(catalog, wanted, { resume: false, apply: false });
  } else if (recorded === undefined) {
    if (hasCloneProgress(catalog.db)) {
      throw new OperatorError(`"${dir}" holds a clone made without --follow`, {
        hint: "pass --restart to start over with a slot and its snapshot",
      });
    }
    let resolve: (snapshot: string) => void = () => {};
    const exported = new Promise<string>((r) => resolve = r);
    holding = holdSnapshot({
      catalog,
      source,
      slot: { name: wanted.slot, plugin, publication: wanted.publication },
      signal: holder.signal,
      onSnapshot: (id) => resolve(id),
    });
    snapshot = await Promise.race([
      exported,
      holding.then(() => {
        throw new Error("the snapshot was released before the copy began");
      }),
    ]);
    await setupStream(catalog, wanted, { resume: false, apply: false });
  } else {
    if (options["resume"] !== true) {
      throw new OperatorError(
        `"${dir}" holds an earlier clone --follow (slot "${recorded.slot}")`,
        {
          hint: "pass --resume to continue it, or --restart to drop it and start over",
        },
      );
    }
    await setupStream(catalog, wanted, { resume: true, apply: false });
    if (!stepDone(catalog.db, "clone")) {
      // The rows must come from the slot's own snapshot, or changes would be lost or doubled.
      if (!recorded.snapshot || !(await snapshotUsable(source, recorded.snapshot))) {
        throw new OperatorError(
          `The copy cannot resume: the snapshot of slot "${recorded.slot}" is gone with the process that held it`,
          {
            hint:
              'run it again with --restart; to make a copy resumable, hold the snapshot in its own process with "pgferry snapshot --follow"',
          },
        );
      }
      snapshot = recorded.snapshot;
    }
  }
  const endpos = stringOption(options, "endpos");
  if (endpos !== undefined) {
    await updateSentinel(catalog, { endpos: lsnArgument(endpos, "endpos") });
  }
  const controller = stopOnSignals();
  const copying = new AbortController();
  const following = runFollow({
    ...wanted,
    dir,
    catalog,
    stages: ["receive", "apply"],
    signal: controller.signal,
    ...settings,
  });
  // A follow that fails while the copy runs stops the copy, and is the error to report.
  let followFailure: unknown;
  following.catch((err) => {
    followFailure = err;
    copying.abort(err);
  });
  controller.signal.addEventListener("abort", () => copying.abort(), { once: true });
  try {
    await copy(snapshot, copying.signal);
  } catch (err) {
    controller.abort();
    await following.catch(() => {});
    throw followFailure ?? err;
  } finally {
    holder.abort();
    await holding;
  }
  await updateSentinel(catalog, { apply: true });
  log.info("the copy is done: applying the changes received meanwhile");
  await following;
  if (controller.signal.aborted) return;
  log.info(`set ${await syncSequences()} sequences from the source`);
}

/** Stops the pipeline cleanly on Ctrl-C or SIGTERM. */
function stopOnSignals(): AbortController {
  const controller = new AbortController();
  const stop = () => controller.abort();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
    } catch {
      // not supported here
    }
  }
  return controller;
}

/** Opens the catalog and makes sure the stream is set up (setting it up when needed). */
async function prepare(options: OptionValues, command: string, stages: StageName[]) {
  const dir = dirFrom(options);
  const source = requiredOption(options, "source", "PGFERRY_SOURCE_PGURI");
  const target = stages.includes("apply")
    ? requiredOption(options, "target", "PGFERRY_TARGET_PGURI")
    : stringOption(options, "target") ?? "";
  const plugin = pluginFrom(options);
  const wanted = { source, target, plugin, ...names(options) };
  const resume = options["resume"] === true;
  if (resume && options["restart"] === true) {
    throw new UsageError("--resume and --restart do not go together");
  }
  if (options["restart"] === true) {
    await cleanupStream(source, target || undefined, wanted);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const catalog = await Catalog.open(dir, { create: true });
  try {
    const recorded = readSetup(catalog);
    if (recorded !== undefined && !resume) {
      throw new OperatorError(`"${dir}" holds an earlier ${command} (slot "${recorded.slot}")`, {
        hint: "pass --resume to continue it, or --restart to drop it and start over",
      });
    }
    await setupStream(catalog, wanted, {
      resume: resume || recorded !== undefined,
      apply: recorded === undefined,
    });
    const endpos = stringOption(options, "endpos");
    if (endpos !== undefined) {
      await updateSentinel(catalog, { endpos: lsnArgument(endpos, "endpos") });
    }
    return { dir, catalog, ...wanted };
  } catch (err) {
    catalog.close();
    throw err;
  }
}

function pipelineCommand(
  path: string[],
  summary: string,
  stages: StageName[],
  description: string,
): CommandSpec {
  return {
    path,
    summary,
    description,
    options: [
      ...streamOptions,
      filtersOption,
      endposOption,
      resumeOption,
      restartOption,
      segmentSizeOption,
      ...retentionOptions,
      ...monitoringOptions,
      ...coordinatorOptions,
    ],
    async run({ options }) {
      const settings = await followSettings(options);
      const prepared = await prepare(options, path.join(" "), stages);
      using catalog = prepared.catalog;
      const controller = stopOnSignals();
      await runFollow({
        ...prepared,
        catalog,
        stages,
        signal: controller.signal,
        ...settings,
      });
    },
  };
}

const follow = pipelineCommand(
  ["follow"],
  "Replay the source's changes on the target until endpos",
  ["receive", "apply"],
  `
Creates the replication slot (and a publication for pgoutput), the target's
replication origin and the sentinel when they do not exist, then receives
changes into the spool in <dir>/cdc and applies them to the target, exactly
once, until every transaction up to endpos is applied. Set endpos up front
(--endpos) or later: "pgferry stream sentinel set endpos". After a crash, run
the same command with --resume.
With --host/--port (PGFERRY_HOST/PGFERRY_PORT) the sentinel is also served
over TCP; a non-loopback address needs PGFERRY_SECRET or --secret-file.
With --metrics-port, Prometheus metrics are served at /metrics (on
127.0.0.1 unless --metrics-host says otherwise). When replay_lsn has not
moved for --stall-timeout seconds while changes wait, apply is reported
stalled and restarted.`,
);

const replay = {
  ...follow,
  path: ["stream", "replay"],
  summary: "Receive and apply live (like follow)",
};

const receive = pipelineCommand(
  ["stream", "receive"],
  "Receive changes into the spool, without applying them",
  ["receive"],
  "Streams the slot into <dir>/cdc until endpos (or Ctrl-C).",
);
const prefetch = { ...receive, path: ["stream", "prefetch"], summary: "Same as stream receive" };

const apply = pipelineCommand(
  ["stream", "apply"],
  "Apply what the spool holds to the target, up to endpos",
  ["apply"],
  "Applies the transactions in <dir>/cdc to the target, exactly once, until endpos.",
);
const catchup = { ...apply, path: ["stream", "catchup"], summary: "Same as stream apply" };

const setup: CommandSpec = {
  path: ["stream", "setup"],
  summary: "Create the slot, publication, target origin and sentinel",
  description: `
CREATE_REPLICATION_SLOT … LOGICAL <plugin> EXPORT_SNAPSHOT on the source (a
publication named after the slot for pgoutput, unless --publication), a
replication origin on the target advanced to the slot's consistent point, and
the sentinel with startpos there. Prints the consistent point. With --resume,
existing objects are reused.`,
  options: [...streamOptions, resumeOption],
  async run({ options, out }) {
    const dir = dirFrom(options);
    using catalog = await Catalog.open(dir, { create: true });
    const setup = await setupStream(catalog, {
      source: requiredOption(options, "source", "PGFERRY_SOURCE_PGURI"),
      target: requiredOption(options, "target", "PGFERRY_TARGET_PGURI"),
      plugin: pluginFrom(options),
      ...names(options),
    }, { resume: options["resume"] === true, apply: false });
    out(formatLsn(setup.consistentPoint));
  },
};

const cleanup: CommandSpec = {
  path: ["stream", "cleanup"],
  summary: "Drop the slot, the publication and the target's origin",
  options: streamOptions,
  async run({ options }) {
    await cleanupStream(
      requiredOption(options, "source", "PGFERRY_SOURCE_PGURI"),
      stringOption(options, "target"),
      names(options),
    );
  },
};

/** follow and the stream commands. */
export const followCommands: CommandSpec[] = [
  follow,
  setup,
  cleanup,
  replay,
  receive,
  prefetch,
  apply,
  catchup,
];
