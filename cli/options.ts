/**
 * Options shared by several commands, declared once, and the helpers that turn
 * their text values into checked values (a bad value is a usage error that
 * names it).
 */
import { join } from "node:path";
import type { OptionSpec, OptionValues } from "./command.ts";
import { OperatorError, UsageError } from "../lib/errors.ts";
import { type Filters, noFilters, parseFilters } from "../lib/clone/filters.ts";
import { type Lsn, parseLsn } from "../lib/lsn.ts";

/** `$TMPDIR/pgferry`, else `/tmp/pgferry`. */
export function defaultDir(): string {
  const tmp = Deno.env.get("TMPDIR");
  return join(tmp && tmp !== "" ? tmp : "/tmp", "pgferry");
}

export const dirOption: OptionSpec = {
  name: "dir",
  type: "string",
  value: "DIR",
  help: "Work directory: the catalog, the spool, logs",
  env: "PGFERRY_DIR",
  default: defaultDir,
};

export const sourceOption: OptionSpec = {
  name: "source",
  type: "string",
  value: "URI",
  help: "Source database connection string",
  env: "PGFERRY_SOURCE_PGURI",
};

export const targetOption: OptionSpec = {
  name: "target",
  type: "string",
  value: "URI",
  help: "Target database connection string",
  env: "PGFERRY_TARGET_PGURI",
};

/** The coordinator's TCP port when none is given. */
export const DEFAULT_COORDINATOR_PORT = 5442;

/** Client side: where the coordinator of a running follow listens. No environment twin, as in pgcopydb. */
export const hostOption: OptionSpec = {
  name: "host",
  type: "string",
  value: "HOST",
  help: "Talk to the coordinator of a running follow at HOST over TCP (never opens the catalog)",
};

export const portOption: OptionSpec = {
  name: "port",
  type: "string",
  value: "PORT",
  help: "The coordinator's TCP port",
  default: String(DEFAULT_COORDINATOR_PORT),
};

/** Server side: where follow's coordinator listens; it starts only when one of these is set. */
export const listenHostOption: OptionSpec = {
  name: "host",
  type: "string",
  value: "HOST",
  help: "Run the sentinel coordinator, listening on HOST (a non-loopback address needs a secret)",
  env: "PGFERRY_HOST",
};

export const listenPortOption: OptionSpec = {
  name: "port",
  type: "string",
  value: "PORT",
  help: "The coordinator's TCP port (starts the coordinator, on 127.0.0.1 unless --host is set)",
  env: "PGFERRY_PORT",
};

export const jsonOption: OptionSpec = {
  name: "json",
  type: "boolean",
  help: "Print JSON",
};

/** The work directory from `--dir`/`PGFERRY_DIR`, else the default. */
export function dirFrom(options: OptionValues): string {
  return stringOption(options, "dir") ?? defaultDir();
}

/** A string option's value, or undefined. */
export function stringOption(options: OptionValues, name: string): string | undefined {
  const value = options[name];
  return typeof value === "string" ? value : undefined;
}

/** A string option the command cannot do without. */
export function requiredOption(options: OptionValues, name: string, env?: string): string {
  const value = stringOption(options, name);
  if (value === undefined) {
    throw new UsageError(`Missing --${name}${env ? ` (or ${env})` : ""}`);
  }
  return value;
}

/** An LSN given on the command line: a bad one is a usage error that quotes it. */
export function lsnArgument(text: string, what: string): Lsn {
  try {
    return parseLsn(text);
  } catch (err) {
    throw new UsageError(`Invalid ${what} "${text}": expected an LSN like "16/B374D848"`, {
      cause: err,
    });
  }
}

/** An integer option within bounds. */
export function intOption(
  options: OptionValues,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const text = stringOption(options, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`Invalid --${name} "${text}": expected an integer from ${min} to ${max}`);
  }
  return value;
}

/** A size option: bytes, or a number with a unit (`10GB`, `512MiB`, `64k`: powers of 1024). */
export function sizeOption(options: OptionValues, name: string): number | undefined {
  const text = stringOption(options, name);
  if (text === undefined) return undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?\s*$/i.exec(text);
  if (!match) {
    throw new UsageError(`Invalid --${name} "${text}": expected a size like 10GiB, 512MB or 4096`);
  }
  const power = match[2] === undefined ? 0 : "kmgt".indexOf(match[2].toLowerCase()) + 1;
  return Math.round(Number(match[1]) * 1024 ** power);
}

export const filtersOption: OptionSpec = {
  name: "filters",
  type: "string",
  value: "FILE",
  help: "Filters in pgcopydb's INI format ([include-only-table], [exclude-schema], …)",
};

/** The filters the options name, or none. */
export async function filtersFrom(options: OptionValues): Promise<Filters> {
  const file = stringOption(options, "filters");
  if (file === undefined) return noFilters();
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    throw new OperatorError(`Cannot read the filters file "${file}": ${String(err)}`, {
      cause: err,
    });
  }
  try {
    return parseFilters(text, file);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
}
