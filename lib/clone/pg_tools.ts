/**
 * pg_dump and pg_restore as child processes. The connection string goes on
 * the command line without its password, which travels in PGPASSWORD, so it
 * shows neither in `ps` nor in our error messages.
 */
import { join } from "node:path";
import { OperatorError } from "../errors.ts";
import { parseConnectionString } from "../pg/replication.ts";
import { maskPasswordsIn, stripPassword } from "../pg/uri.ts";

/** Where pg_dump and pg_restore are looked for, best first. */
async function toolPath(tool: "pg_dump" | "pg_restore", major: number): Promise<string> {
  const dirs: string[] = [];
  const fromEnv = Deno.env.get("PGFERRY_PG_BIN") ?? Deno.env.get("PGCOPYDB_PG_BIN");
  if (fromEnv) dirs.push(fromEnv);
  if (major > 0) dirs.push(`/usr/lib/postgresql/${major}/bin`);
  for (const dir of dirs) {
    try {
      await Deno.stat(join(dir, tool));
      return join(dir, tool);
    } catch {
      // next
    }
  }
  return tool;
}

/** Arguments and environment that connect a pg tool to `pguri`. */
function connection(pguri: string): { dbname: string; env: Record<string, string> } {
  let password: string | undefined;
  try {
    password = parseConnectionString(pguri).password;
  } catch {
    password = undefined;
  }
  return {
    dbname: stripPassword(pguri),
    env: password === undefined ? {} : { PGPASSWORD: password },
  };
}

/** Runs a pg tool; returns its stdout or fails with its stderr. */
async function runTool(
  tool: "pg_dump" | "pg_restore",
  major: number,
  args: string[],
  pguri: string | undefined,
  what: string,
): Promise<string> {
  const path = await toolPath(tool, major);
  const conn = pguri === undefined ? undefined : connection(pguri);
  const fullArgs = conn === undefined ? args : ["--dbname", conn.dbname, ...args];
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(path, {
      args: fullArgs,
      env: { PGAPPNAME: "pgferry", ...(conn?.env ?? {}) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    throw new OperatorError(`Cannot run ${tool} ("${path}") to ${what}`, {
      cause: err,
      hint:
        `install the PostgreSQL client of the source's major version (${major}), or set PGFERRY_PG_BIN to the directory holding ${tool}`,
    });
  }
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (output.code !== 0) {
    const lines = stderr.split("\n");
    const shown = lines.length > 30
      ? [...lines.slice(0, 30), `… ${lines.length - 30} more lines`]
      : lines;
    throw new OperatorError(
      `Cannot ${what}: ${tool} exited with code ${output.code}:\n${
        maskPasswordsIn(shown.join("\n"))
      }`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

/**
 * `pg_dump -Fc` of the pre-data and post-data sections, as of `snapshot` when
 * given. Written to a temporary name and renamed once complete, so that a
 * pg_dump left running by a killed pgferry never overwrites a good archive.
 */
export async function dumpSchema(
  source: string,
  file: string,
  options: { snapshot?: string | undefined; major: number },
): Promise<void> {
  const partial = `${file}.${Deno.pid}.partial`;
  const args = ["--format=custom", "--section=pre-data", "--section=post-data", "--file", partial];
  if (options.snapshot !== undefined) args.push(`--snapshot=${options.snapshot}`);
  await runTool("pg_dump", options.major, args, source, "dump the source schema");
  await Deno.rename(partial, file);
}

/** `pg_restore --list --verbose`: the archive's entries with their dependencies. */
export async function listArchive(file: string, major: number): Promise<string> {
  return await runTool(
    "pg_restore",
    major,
    ["--list", "--verbose", file],
    undefined,
    "list the schema archive",
  );
}

export interface RestoreOptions {
  section: "pre-data" | "post-data";
  /** The `--use-list` file. */
  list: string;
  major: number;
  /** Drop each object first (`--clean --if-exists`). */
  clean?: boolean;
  noOwner?: boolean;
  noAcl?: boolean;
  noComments?: boolean;
}

/**
 * The SQL script `pg_restore --single-transaction` would run for one section.
 * The caller runs it on its own connection: when pgferry dies, the server
 * rolls it back (nothing is left running on its own, as a pg_restore child
 * would be), and a resumed clone knows that it is all or nothing.
 */
export async function restoreScript(file: string, options: RestoreOptions): Promise<string> {
  const args = [
    `--section=${options.section}`,
    "--use-list",
    options.list,
    "--single-transaction",
    "--file=-",
  ];
  if (options.clean) args.push("--clean", "--if-exists");
  if (options.noOwner) args.push("--no-owner");
  if (options.noAcl) args.push("--no-acl");
  if (options.noComments) args.push("--no-comments");
  args.push(file);
  const script = await runTool(
    "pg_restore",
    options.major,
    args,
    undefined,
    `make the ${options.section} script`,
  );
  return withoutRestrictKey(script);
}

/**
 * Scripts from pg_restore 17.6, 16.10, 15.14, … open with `\restrict KEY` and end
 * with `\unrestrict KEY`: psql meta-commands that stop a malicious dump from
 * running other meta-commands. The server does not know them, and a script run
 * over the protocol cannot run meta-commands anyway, so both lines go.
 */
export function withoutRestrictKey(script: string): string {
  const match = /^\\restrict (\S+)$/m.exec(script);
  if (match === null) return script;
  const key = match[1]!;
  return script.split("\n").filter((line) =>
    line !== `\\restrict ${key}` && line !== `\\unrestrict ${key}`
  ).join("\n");
}
