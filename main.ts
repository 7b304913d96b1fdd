/**
 * pgferry: argv → command → exit code. The only place that calls Deno.exit.
 * Exit codes: 0 success, 1 runtime failure, 2 usage error (with the command's help).
 */
import { COMMANDS } from "./cli/commands.ts";
import { commandHelp, groupHelp, parseCommandArgs } from "./cli/command.ts";
import type { CommandSpec } from "./cli/command.ts";
import { errorMessage, OperatorError, UsageError } from "./lib/errors.ts";
import { maskPasswordsIn } from "./lib/pg/uri.ts";

const OVERVIEW = `pgferry copies a PostgreSQL database to another server and keeps the copy
following the source through logical decoding until you say where to stop.
Commands, options and the sentinel protocol follow pgcopydb's.`;

/** The leaf command that the first words of argv name, and the rest of argv. */
function findCommand(argv: string[]): { command?: CommandSpec; prefix: string[]; rest: string[] } {
  let best: CommandSpec | undefined;
  for (const command of COMMANDS) {
    const matches = command.path.every((word, i) => argv[i] === word);
    if (matches && (best === undefined || command.path.length > best.path.length)) best = command;
  }
  if (best) return { command: best, prefix: best.path, rest: argv.slice(best.path.length) };
  // The longest prefix that names a group of commands.
  const prefix: string[] = [];
  for (const word of argv) {
    if (word.startsWith("-")) break;
    const next = [...prefix, word];
    if (!COMMANDS.some((c) => next.every((w, i) => c.path[i] === w))) break;
    prefix.push(word);
  }
  return { prefix, rest: argv.slice(prefix.length) };
}

function mainHelp(): string {
  return `${OVERVIEW}\n\n${groupHelp([], COMMANDS)}`;
}

/** Runs pgferry with these arguments and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const out = (line: string) => console.log(line);
  if (argv.length === 0 || ["help", "--help", "-h"].includes(argv[0]!)) {
    const topic = argv.slice(1);
    if (topic.length > 0) return main([...topic, "--help"]);
    out(mainHelp());
    return 0;
  }
  if (argv[0] === "--version") return main(["version"]);
  const { command, prefix, rest } = findCommand(argv);
  if (command === undefined) {
    const wantsHelp = rest.length === 0 || rest.includes("--help") || rest.includes("-h");
    if (prefix.length > 0 && wantsHelp) {
      out(groupHelp(prefix, COMMANDS));
      return 0;
    }
    const what = rest[0] === undefined ? "" : ` "${[...prefix, rest[0]].join(" ")}"`;
    console.error(`error: unknown command${what}\n`);
    console.error(prefix.length > 0 ? groupHelp(prefix, COMMANDS) : mainHelp());
    return 2;
  }
  try {
    const parsed = parseCommandArgs(command, rest);
    if (parsed.help) {
      out(commandHelp(command));
      return 0;
    }
    return (await command.run({ options: parsed.options, args: parsed.args, out })) ?? 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n`);
      console.error(commandHelp(command));
      return 2;
    }
    console.error(`error: ${maskPasswordsIn(errorMessage(err))}`);
    if (err instanceof OperatorError && err.hint) console.error(`hint: ${err.hint}`);
    if (Deno.env.get("PGFERRY_DEBUG") && err instanceof Error && err.stack) {
      console.error(maskPasswordsIn(err.stack));
    }
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
