/**
 * The command table: every command pgferry has, in the order `pgferry help`
 * lists them. Help, the docs' command reference and dispatch come from here.
 */
import type { CommandSpec } from "./command.ts";
import { sentinelCommands } from "./sentinel.ts";
import { followCommands } from "./follow.ts";
import { snapshotCommands } from "./snapshot.ts";
import { cloneCommands } from "./clone.ts";
import { compareCommands } from "./compare.ts";
import { listCommands } from "./list.ts";
import { pruneCommands } from "./prune.ts";
import { statusCommands } from "./status.ts";
import { catalogCommands } from "./catalog.ts";
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
  ...cloneCommands,
  ...followCommands,
  ...snapshotCommands,
  ...sentinelCommands,
  ...compareCommands,
  ...listCommands,
  ...pruneCommands,
  ...statusCommands,
  ...catalogCommands,
  version,
];
