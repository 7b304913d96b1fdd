/**
 * The command table: every command pgferry has, in the order `pgferry help`
 * lists them. Help, the docs' command reference and dispatch come from here.
 */
import type { CommandSpec } from "./command.ts";
import { sentinelCommands } from "./sentinel.ts";
import { followCommands } from "./follow.ts";
import config from "../deno.json" with { type: "json" };

/** pgferry's version, from deno.json. */
export const VERSION: string = config.version;

const version: CommandSpec = {
  path: ["version"],
  summary: "Print pgferry's version",
  options: [],
  run({ out }) {
    out(`pgferry ${VERSION}`);
    return Promise.resolve();
  },
};

/** Every leaf command. `help` is handled by main.ts from this table. */
export const COMMANDS: CommandSpec[] = [
  ...followCommands,
  ...sentinelCommands,
  version,
];
