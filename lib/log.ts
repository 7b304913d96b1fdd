/**
 * Logs on stderr: human lines on a terminal, JSON lines with
 * PGFERRY_LOG_JSON=true. Every line passes through `maskPasswordsIn`, so a
 * connection string in a message never shows its password.
 */
import { maskPasswordsIn } from "./pg/uri.ts";

export type Level = "debug" | "info" | "notice" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 0, info: 1, notice: 2, warn: 3, error: 4 };

/** Extra structured fields of a log line. */
export type Fields = Record<string, string | number | boolean | bigint | undefined>;

function envFlag(name: string): string | undefined {
  try {
    return Deno.env.get(name) ?? Deno.env.get(name.replace(/^PGFERRY_/, "PGCOPYDB_"));
  } catch {
    return undefined; // no --allow-env
  }
}

let json = /^(true|yes|on|1)$/i.test(envFlag("PGFERRY_LOG_JSON") ?? "");
let threshold: Level = (envFlag("PGFERRY_LOG_LEVEL") as Level | undefined) ?? "info";
if (!(threshold in ORDER)) threshold = "info";

/** Changes the least level that is printed (`--verbose` → debug, `--quiet` → warn). */
export function setLogLevel(level: Level): void {
  threshold = level;
}

/** Switches between human and JSON lines. */
export function setLogJson(on: boolean): void {
  json = on;
}

const encoder = new TextEncoder();

/** Writes one log line. `component` says which stage speaks: "receive", "coordinator"… */
export function log(level: Level, component: string, message: string, fields: Fields = {}): void {
  if (ORDER[level] < ORDER[threshold]) return;
  const time = new Date().toISOString();
  let line: string;
  if (json) {
    const record: Record<string, string | number | boolean> = {
      time,
      level,
      component,
      message: maskPasswordsIn(message),
    };
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      record[key] = typeof value === "bigint"
        ? value.toString()
        : typeof value === "string"
        ? maskPasswordsIn(value)
        : value;
    }
    line = JSON.stringify(record);
  } else {
    const extra = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${maskPasswordsIn(String(value))}`)
      .join(" ");
    line = `${time.slice(11, 23)} ${level.toUpperCase().padEnd(6)} ${component}: ${
      maskPasswordsIn(message)
    }${extra ? ` ${extra}` : ""}`;
  }
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** A logger bound to one component. */
export function logger(component: string) {
  return {
    debug: (message: string, fields?: Fields) => log("debug", component, message, fields),
    info: (message: string, fields?: Fields) => log("info", component, message, fields),
    notice: (message: string, fields?: Fields) => log("notice", component, message, fields),
    warn: (message: string, fields?: Fields) => log("warn", component, message, fields),
    error: (message: string, fields?: Fields) => log("error", component, message, fields),
  };
}

/** What `logger()` returns. */
export type Logger = ReturnType<typeof logger>;
