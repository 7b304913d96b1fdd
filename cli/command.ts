/**
 * The declarative command table's types, and what is generated from it: flag
 * parsing (`node:util` parseArgs), environment twins, and help text.
 */
import { parseArgs } from "node:util";
import { UsageError } from "../lib/errors.ts";

/** One `--option`. `env` names its PGFERRY_* twin; the PGCOPYDB_* name is a fallback. */
export interface OptionSpec {
  name: string;
  type: "string" | "boolean";
  help: string;
  /** Shown after the flag in help: `--dir DIR`. */
  value?: string;
  env?: string;
  /** Shown in help; also used when neither the flag nor the environment gives a value. */
  default?: string | (() => string);
  /** Old names accepted for compatibility with pgcopydb (`--jobs` for `--table-jobs`). */
  aliases?: string[];
}

/** Values of a command's options after flags, environment and defaults. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** What a command's `run` receives. */
export interface CommandContext {
  options: OptionValues;
  args: string[];
  /** Where the command prints its results. */
  out: (line: string) => void;
}

/** One leaf command: `pgferry stream sentinel get`. */
export interface CommandSpec {
  path: string[];
  summary: string;
  /** The positional part of the usage line: `LSN`, `[FILE]`. */
  args?: string;
  minArgs?: number;
  maxArgs?: number;
  /** Paragraphs printed under the usage line. */
  description?: string;
  options: OptionSpec[];
  /** Returns the exit code (0 when it returns nothing). */
  run(ctx: CommandContext): Promise<number | void>;
}

/** Environment names read for an option, in order: PGFERRY_* then PGCOPYDB_*. */
export function envNames(option: OptionSpec): string[] {
  if (option.env === undefined) return [];
  const fallback = option.env.replace(/^PGFERRY_/, "PGCOPYDB_");
  return fallback === option.env ? [option.env] : [option.env, fallback];
}

const HELP_OPTION: OptionSpec = { name: "help", type: "boolean", help: "Show this help" };

/** Parses argv for a command: flags, then environment twins, then defaults. */
export function parseCommandArgs(
  command: CommandSpec,
  argv: string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): { options: OptionValues; args: string[]; help: boolean } {
  const specs = [...command.options, HELP_OPTION];
  const config: Record<string, { type: "string" | "boolean" }> = {};
  const aliasOf = new Map<string, string>();
  for (const spec of specs) {
    config[spec.name] = { type: spec.type };
    for (const alias of spec.aliases ?? []) {
      config[alias] = { type: spec.type };
      aliasOf.set(alias, spec.name);
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: config, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(cleanParseError(err), { cause: err });
  }
  const raw = parsed.values as Record<string, string | boolean | undefined>;
  for (const [alias, name] of aliasOf) {
    if (raw[alias] !== undefined && raw[name] === undefined) raw[name] = raw[alias];
    delete raw[alias];
  }
  const help = raw["help"] === true;
  const options: OptionValues = {};
  for (const spec of command.options) {
    let value = raw[spec.name];
    if (value === undefined) {
      for (const name of envNames(spec)) {
        const fromEnv = env(name);
        if (fromEnv !== undefined && fromEnv !== "") {
          value = spec.type === "boolean" ? parseBoolean(fromEnv, name) : fromEnv;
          break;
        }
      }
    }
    if (value === undefined && spec.default !== undefined && spec.type === "string") {
      value = typeof spec.default === "function" ? spec.default() : spec.default;
    }
    options[spec.name] = value;
  }
  const args = parsed.positionals;
  if (!help) {
    if (args.length < (command.minArgs ?? 0)) {
      throw new UsageError(
        `${commandName(command)}: missing argument${command.args ? ` ${command.args}` : ""}`,
      );
    }
    if (args.length > (command.maxArgs ?? 0)) {
      throw new UsageError(
        `${commandName(command)}: unexpected argument "${args[command.maxArgs ?? 0]}"`,
      );
    }
  }
  return { options, args, help };
}

/** Booleans in the environment use PostgreSQL's spelling (true/yes/on/1). */
function parseBoolean(text: string, name: string): boolean {
  const lower = text.toLowerCase();
  if (["true", "yes", "on", "1", "t", "y"].includes(lower)) return true;
  if (["false", "no", "off", "0", "f", "n"].includes(lower)) return false;
  throw new UsageError(`Invalid boolean "${text}" in environment variable ${name}`);
}

function cleanParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // parseArgs adds advice about "--" that does not apply to us.
  return message.replace(/\. To specify a positional argument.*$/s, "").replace(/\.$/, "");
}

/** `pgferry stream sentinel get` */
export function commandName(command: CommandSpec): string {
  return ["pgferry", ...command.path].join(" ");
}

/** The help of one command: usage, description, options with their environment twins. */
export function commandHelp(command: CommandSpec): string {
  const lines = [
    `${commandName(command)}: ${command.summary}`,
    "",
    `usage: ${commandName(command)}${command.args ? ` ${command.args}` : ""}${
      command.options.length > 0 ? " [options]" : ""
    }`,
  ];
  if (command.description) lines.push("", ...command.description.trim().split("\n"));
  if (command.options.length > 0) {
    lines.push("", "options:");
    const flags = command.options.map((o) =>
      `--${o.name}${o.value ? ` ${o.value}` : ""}${
        o.aliases ? `, ${o.aliases.map((a) => `--${a}`).join(", ")}` : ""
      }`
    );
    const width = Math.max(...flags.map((f) => f.length)) + 2;
    command.options.forEach((option, i) => {
      const notes: string[] = [];
      const env = envNames(option);
      if (env.length > 0) notes.push(`env ${env.join(", ")}`);
      if (option.default !== undefined) {
        notes.push(
          `default ${typeof option.default === "function" ? option.default() : option.default}`,
        );
      }
      lines.push(`  ${flags[i]!.padEnd(width)}${option.help}`);
      if (notes.length > 0) lines.push(`  ${"".padEnd(width)}(${notes.join("; ")})`);
    });
  }
  return lines.join("\n");
}

/** The help of a group (`pgferry stream sentinel set`): its subcommands, one line each. */
export function groupHelp(prefix: string[], commands: CommandSpec[]): string {
  const below = commands.filter((c) => prefix.every((word, i) => c.path[i] === word));
  const rows = below.map((c) => [
    `${c.path.slice(prefix.length).join(" ")}${c.args ? ` ${c.args}` : ""}`,
    c.summary,
  ]);
  const width = Math.max(...rows.map(([left]) => left!.length)) + 2;
  const title = ["pgferry", ...prefix].join(" ");
  return [
    `usage: ${title} <command> [options]`,
    "",
    "commands:",
    ...rows.map(([left, right]) => `  ${left!.padEnd(width)}${right}`),
    "",
    `Run "${title} <command> --help" for the options of a command.`,
  ].join("\n");
}
