/**
 * Writes docs/commands.md from the command table, so that the reference
 * cannot drift from `pgferry … --help`. tests/docs_test.ts regenerates it in
 * memory and fails when the file differs. The Markdown goes through
 * `deno fmt`, so that the file also passes `deno fmt --check`.
 *
 *   deno run -A scripts/gen_docs.ts   (or: deno task docs)
 */
import { COMMANDS } from "../cli/commands.ts";
import { commandHelp, commandName, envNames } from "../cli/command.ts";
import type { CommandSpec, OptionSpec } from "../cli/command.ts";
import { defaultDir } from "../cli/options.ts";

/** Where the generated reference lives, from the repository root. */
export const COMMANDS_DOC = "docs/commands.md";

/**
 * Defaults computed at run time, shown as a rule rather than as the value on
 * the machine that generated the docs. A new one must be added here.
 */
const RUNTIME_DEFAULTS = new Map<() => string, string>([
  [defaultDir, "$TMPDIR/pgferry, else /tmp/pgferry"],
]);

function documentedDefault(option: OptionSpec): OptionSpec {
  const value = option.default;
  if (typeof value !== "function") return option;
  const text = RUNTIME_DEFAULTS.get(value);
  if (text === undefined) {
    throw new TypeError(
      `The default of --${option.name} is computed at run time: describe it in RUNTIME_DEFAULTS of scripts/gen_docs.ts`,
    );
  }
  return { ...option, default: text };
}

/** GitHub's anchor for a heading made of plain words. */
function anchor(heading: string): string {
  return heading.toLowerCase().replace(/[^a-z0-9 _-]/g, "").replaceAll(" ", "-");
}

/** The Markdown of docs/commands.md for these commands. */
export function renderCommands(commands: CommandSpec[] = COMMANDS): string {
  const lines = [
    "# Command reference",
    "",
    "<!-- Generated from the command table (cli/commands.ts) by scripts/gen_docs.ts: do not edit.",
    "     Regenerate with: deno run -A scripts/gen_docs.ts -->",
    "",
    "Every command prints this help with `--help`; `pgferry help` lists them all. Options may also come from",
    "the environment variables named in their help: the `PGFERRY_*` name first, then pgcopydb's",
    "`PGCOPYDB_*` name; a flag on the command line wins over both.",
    "",
    "Exit codes: 0 success, 1 runtime failure (`error:` and often a `hint:` line on stderr), 2 usage",
    "error (the command's help follows the message).",
    "",
    "## Commands",
    "",
  ];
  for (const command of commands) {
    const name = commandName(command);
    lines.push(`- [\`${name}\`](#${anchor(name)}): ${command.summary}`);
  }
  for (const command of commands) {
    const documented = { ...command, options: command.options.map(documentedDefault) };
    lines.push("", `## ${commandName(command)}`, "", "```text", commandHelp(documented), "```");
  }
  lines.push("", "## Environment variables", "");
  const uses = new Map<string, string[]>();
  for (const command of commands) {
    for (const option of command.options) {
      const names = envNames(option);
      if (names.length === 0) continue;
      const key = `${names.map((n) => `\`${n}\``).join(", ")} (\`--${option.name}\`)`;
      uses.set(key, [...(uses.get(key) ?? []), command.path.join(" ")]);
    }
  }
  for (const [key, where] of [...uses].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`- ${key}: ${where.join(", ")}`);
  }
  return lines.join("\n") + "\n";
}

/** Markdown as `deno fmt` writes it, with this repository's configuration. */
export async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    cwd: new URL("..", import.meta.url),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) throw new Error(`deno fmt failed: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout);
}

if (import.meta.main) {
  const path = new URL(`../${COMMANDS_DOC}`, import.meta.url);
  await Deno.writeTextFile(path, await formatMarkdown(renderCommands()));
  console.log(`wrote ${COMMANDS_DOC}`);
}
