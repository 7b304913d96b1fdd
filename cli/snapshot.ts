/** `pgferry snapshot`: export a snapshot of the source and hold it until signalled. */
import type { CommandSpec, OptionSpec } from "./command.ts";
import { dirFrom, dirOption, requiredOption, sourceOption, stringOption } from "./options.ts";
import { pluginFrom, pluginOption, slotOption } from "./follow.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { holdSnapshot } from "../lib/follow/hold_snapshot.ts";

const followOption: OptionSpec = {
  name: "follow",
  type: "boolean",
  help: "Create the logical replication slot and export its snapshot (for clone then follow)",
};

const publicationOption: OptionSpec = {
  name: "publication",
  type: "string",
  value: "NAME",
  help: "With --follow and pgoutput: the publication (default: one named after the slot)",
};

const snapshot: CommandSpec = {
  path: ["snapshot"],
  summary: "Export a snapshot of the source and hold it until Ctrl-C or SIGTERM",
  description: `
Prints the snapshot id on stdout, records it in <dir>/catalog.db and keeps it
valid until interrupted (SIGINT or SIGTERM), so that other commands run with
the same --dir copy the source as of that snapshot. With --follow, the snapshot
comes from CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT (a publication named after
the slot is created first for pgoutput): "stream setup", "follow" and "stream
receive" with this --dir then use that slot and start at its consistent point.`,
  options: [sourceOption, dirOption, followOption, pluginOption, slotOption, publicationOption],
  async run({ options, out }) {
    const source = requiredOption(options, "source", "PGFERRY_SOURCE_PGURI");
    const plugin = pluginFrom(options);
    const name = stringOption(options, "slot-name") ?? "pgferry";
    using catalog = await Catalog.open(dirFrom(options), { create: true });
    const controller = new AbortController();
    const stop = () => controller.abort();
    const signals = ["SIGINT", "SIGTERM"] as const;
    for (const sig of signals) Deno.addSignalListener(sig, stop);
    try {
      await holdSnapshot({
        catalog,
        source,
        slot: options["follow"] === true
          ? {
            name,
            plugin,
            publication: stringOption(options, "publication") ?? name,
          }
          : undefined,
        signal: controller.signal,
        onSnapshot: out,
      });
    } finally {
      for (const sig of signals) Deno.removeSignalListener(sig, stop);
    }
  },
};

/** The snapshot command. */
export const snapshotCommands: CommandSpec[] = [snapshot];
