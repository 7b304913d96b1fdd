/**
 * `pgferry stream sentinel …`: read and steer the sentinel, straight through
 * the catalog or over TCP to the coordinator of a running follow (`--host`).
 */
import type { CommandContext, CommandSpec, OptionSpec, OptionValues } from "./command.ts";
import {
  DEFAULT_COORDINATOR_PORT,
  dirFrom,
  dirOption,
  hostOption,
  intOption,
  jsonOption,
  lsnArgument,
  portOption,
  requiredOption,
  sourceOption,
  stringOption,
} from "./options.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { type Sentinel, setupSentinel } from "../lib/catalog/sentinel_store.ts";
import { OperatorError, UsageError } from "../lib/errors.ts";
import { formatLsn, INVALID_LSN, type Lsn } from "../lib/lsn.ts";
import { type SentinelTransport, SqliteSentinelTransport } from "../lib/sentinel/transport.ts";
import { withConnection } from "../lib/pg/connect.ts";
import { type Endpoint, TcpSentinelTransport, watchSentinel } from "../lib/sentinel/client.ts";
import { loadSecret } from "../lib/sentinel/secret.ts";

const secretFileOption: OptionSpec = {
  name: "secret-file",
  type: "string",
  value: "FILE",
  help: "Read the coordinator's shared secret from FILE (else PGFERRY_SECRET)",
};

const tlsCaOption: OptionSpec = {
  name: "tls-ca",
  type: "string",
  value: "FILE",
  help: "Talk TLS to the coordinator, trusting the CA certificate in FILE (PEM)",
};

/** The options that reach the coordinator of a running follow over TCP. */
export const tcpOptions: OptionSpec[] = [hostOption, portOption, secretFileOption, tlsCaOption];
const transportOptions: OptionSpec[] = [dirOption, ...tcpOptions];

const VALUE_FLAGS = [
  ["startpos", "startpos"],
  ["endpos", "endpos"],
  ["apply", "apply"],
  ["write-lsn", "write_lsn"],
  ["flush-lsn", "flush_lsn"],
  ["replay-lsn", "replay_lsn"],
] as const;

/** The coordinator the options name, with the secret and CA they point to. */
export async function endpointFrom(options: OptionValues, host: string): Promise<Endpoint> {
  const caFile = stringOption(options, "tls-ca");
  return {
    host,
    port: intOption(options, "port", 1, 65535) ?? DEFAULT_COORDINATOR_PORT,
    secret: await loadSecret(stringOption(options, "secret-file")),
    tlsCa: caFile === undefined ? undefined : await Deno.readTextFile(caFile),
  };
}

/** Opens the transport the options ask for: TCP with --host, else the catalog. */
async function openTransport(options: OptionValues): Promise<SentinelTransport> {
  const host = stringOption(options, "host");
  if (host === undefined) return await SqliteSentinelTransport.open(dirFrom(options));
  return new TcpSentinelTransport(await endpointFrom(options, host));
}

/** The six `name  value` lines of `sentinel get`, as pgcopydb prints them. */
export function sentinelLines(sentinel: Sentinel): string[] {
  return sentinelFields(sentinel).map(([name, value]) => `${name.padEnd(15)} ${value}`);
}

function sentinelFields(sentinel: Sentinel): [string, string][] {
  return [
    ["startpos", formatLsn(sentinel.startpos)],
    ["endpos", formatLsn(sentinel.endpos)],
    ["apply", sentinel.apply ? "enabled" : "disabled"],
    ["write_lsn", formatLsn(sentinel.writeLsn)],
    ["flush_lsn", formatLsn(sentinel.flushLsn)],
    ["replay_lsn", formatLsn(sentinel.replayLsn)],
  ];
}

function sentinelJson(sentinel: Sentinel): string {
  return JSON.stringify(
    {
      startpos: formatLsn(sentinel.startpos),
      endpos: formatLsn(sentinel.endpos),
      apply: sentinel.apply,
      write_lsn: formatLsn(sentinel.writeLsn),
      flush_lsn: formatLsn(sentinel.flushLsn),
      replay_lsn: formatLsn(sentinel.replayLsn),
    },
    null,
    2,
  );
}

/** Who changed the sentinel, for the log of the process that applies the change. */
function reason(command: string): string {
  return `pgferry stream sentinel ${command} (pid ${Deno.pid} on ${Deno.hostname()})`;
}

async function withTransport<T>(
  options: OptionValues,
  fn: (transport: SentinelTransport) => Promise<T>,
): Promise<T> {
  await using transport = await openTransport(options);
  return await fn(transport);
}

const setup: CommandSpec = {
  path: ["stream", "sentinel", "setup"],
  summary: "Create the sentinel in the catalog (apply off, progress at 0/0)",
  args: "[STARTPOS [ENDPOS]]",
  maxArgs: 2,
  description: `
Always works on the catalog in --dir (creating it when missing), never over TCP.
STARTPOS and ENDPOS may also be given as --startpos and --endpos; 0/0 means unset.`,
  options: [
    dirOption,
    { name: "startpos", type: "string", value: "LSN", help: "Where streaming starts" },
    { name: "endpos", type: "string", value: "LSN", help: "Where follow stops (0/0: no limit)" },
  ],
  async run({ options, args, out }) {
    const startText = stringOption(options, "startpos") ?? args[0];
    const endText = stringOption(options, "endpos") ?? args[1];
    const startpos = startText === undefined ? INVALID_LSN : lsnArgument(startText, "startpos");
    const endpos = endText === undefined ? INVALID_LSN : lsnArgument(endText, "endpos");
    using catalog = await Catalog.open(dirFrom(options), { create: true });
    const sentinel = await setupSentinel(catalog, startpos, endpos);
    await catalog.log(
      "sentinel setup",
      `startpos ${formatLsn(startpos)}, endpos ${formatLsn(endpos)}`,
    );
    for (const line of sentinelLines(sentinel)) out(line);
  },
};

const get: CommandSpec = {
  path: ["stream", "sentinel", "get"],
  summary: "Print the sentinel, or one of its values",
  description: `
Prints six lines (startpos, endpos, apply, write_lsn, flush_lsn, replay_lsn),
JSON with --json, or a single value with one of the value flags.`,
  options: [
    ...transportOptions,
    jsonOption,
    ...VALUE_FLAGS.map(([flag, field]): OptionSpec => ({
      name: flag,
      type: "boolean",
      help: `Print only ${field}`,
    })),
  ],
  async run({ options, out }) {
    const wanted = VALUE_FLAGS.filter(([flag]) => options[flag] === true);
    if (wanted.length > 1) {
      throw new UsageError(
        `Choose one value to print, not ${wanted.map(([flag]) => `--${flag}`).join(" and ")}`,
      );
    }
    if (wanted.length === 1 && options["json"] === true) {
      throw new UsageError(`--json prints the whole sentinel: drop --${wanted[0]![0]}`);
    }
    const sentinel = await withTransport(options, (t) => t.get());
    if (options["json"] === true) {
      out(sentinelJson(sentinel));
    } else if (wanted.length === 1) {
      const field = wanted[0]![1];
      out(sentinelFields(sentinel).find(([name]) => name === field)![1]);
    } else {
      for (const line of sentinelLines(sentinel)) out(line);
    }
  },
};

const setStartpos: CommandSpec = {
  path: ["stream", "sentinel", "set", "startpos"],
  summary: "Set where streaming starts",
  args: "LSN",
  minArgs: 1,
  maxArgs: 1,
  options: transportOptions,
  async run({ options, args, out }) {
    const lsn = lsnArgument(args[0]!, "startpos");
    await withTransport(options, (t) => t.setStartpos(lsn, reason("set startpos")));
    out(formatLsn(lsn));
  },
};

const setEndpos: CommandSpec = {
  path: ["stream", "sentinel", "set", "endpos"],
  summary: "Set where follow stops: an LSN, or the source's current position",
  args: "(LSN | --current)",
  maxArgs: 1,
  description: `
Every transaction that commits at or before endpos is applied, nothing after it;
follow exits 0 once replay_lsn reaches endpos. With --current, endpos is the
source's pg_current_wal_flush_lsn() (needs --source). Prints the endpos it set.`,
  options: [
    ...transportOptions,
    { name: "current", type: "boolean", help: "Use the source's current WAL flush position" },
    sourceOption,
  ],
  async run({ options, args, out }) {
    const current = options["current"] === true;
    if (current === (args[0] !== undefined)) {
      throw new UsageError("Give either an LSN or --current, not both or neither");
    }
    const lsn = current ? await currentFlushLsn(options) : lsnArgument(args[0]!, "endpos");
    await withTransport(options, (t) => t.setEndpos(lsn, reason("set endpos")));
    out(formatLsn(lsn));
  },
};

async function currentFlushLsn(options: OptionValues): Promise<Lsn> {
  const source = requiredOption(options, "source", "PGFERRY_SOURCE_PGURI");
  const text = await withConnection(source, "source", async (sql) => {
    const [row] = await sql`select pg_current_wal_flush_lsn()::text as lsn`;
    return String(row!["lsn"]);
  });
  return lsnArgument(text, "current LSN");
}

function setApplyCommand(word: "apply" | "prefetch"): CommandSpec {
  const apply = word === "apply";
  return {
    path: ["stream", "sentinel", "set", word],
    summary: apply
      ? "Turn apply on: changes are applied to the target"
      : "Turn apply off: changes are received and spooled, not applied",
    options: transportOptions,
    async run({ options, out }: CommandContext) {
      await withTransport(options, (t) => t.setApply(apply));
      out(apply ? "enabled" : "disabled");
    },
  };
}

const ping: CommandSpec = {
  path: ["stream", "sentinel", "ping"],
  summary: "Check that the coordinator of a running follow answers (for scripts)",
  description: `
With --wait, keeps trying until the coordinator answers or SECONDS have passed.`,
  options: [
    ...tcpOptions,
    { name: "wait", type: "string", value: "SECONDS", help: "Keep trying for up to SECONDS" },
  ],
  async run({ options, out }) {
    const host = stringOption(options, "host");
    if (host === undefined) throw new UsageError("ping needs --host: it talks to the coordinator");
    const waitSeconds = intOption(options, "wait", 0, 86400) ?? 0;
    const transport = new TcpSentinelTransport(await endpointFrom(options, host));
    const deadline = Date.now() + waitSeconds * 1000;
    for (;;) {
      try {
        await transport.ping();
        out("pong");
        return;
      } catch (err) {
        if (Date.now() >= deadline || !(err instanceof OperatorError) || !isUnreachable(err)) {
          throw err;
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  },
};

const watch: CommandSpec = {
  path: ["stream", "sentinel", "watch"],
  summary: "Print the sentinel each time it changes, pushed by the coordinator",
  description: `
Subscribes to the coordinator of a running follow (--host): one line per change
(JSON lines with --json). With --until-endpos, exits 0 once replay_lsn reaches
endpos, which is what scripts otherwise poll for.`,
  options: [
    ...tcpOptions,
    jsonOption,
    { name: "until-endpos", type: "boolean", help: "Exit 0 once replay_lsn reaches endpos" },
  ],
  async run({ options, out }) {
    const host = stringOption(options, "host");
    if (host === undefined) {
      throw new UsageError("watch needs --host: the coordinator pushes updates");
    }
    const until = options["until-endpos"] === true;
    await watchSentinel(await endpointFrom(options, host), (sentinel) => {
      out(
        options["json"] === true
          ? sentinelJson(sentinel).replace(/\n\s*/g, "")
          : sentinelFields(sentinel).map(([name, value]) => `${name}=${value}`).join(" "),
      );
      return until && sentinel.endpos !== 0n && sentinel.replayLsn >= sentinel.endpos;
    });
  },
};

function isUnreachable(err: OperatorError): boolean {
  return err.message.startsWith("cannot reach");
}

/** The `stream sentinel` commands. */
export const sentinelCommands: CommandSpec[] = [
  setup,
  get,
  ping,
  watch,
  setStartpos,
  setEndpos,
  setApplyCommand("apply"),
  setApplyCommand("prefetch"),
];
