/**
 * `pgferry status`: what each stage of the pipeline is doing, from the work
 * directory or from the coordinator of a running follow (--host).
 */
import type { CommandSpec } from "./command.ts";
import { dirFrom, dirOption, jsonOption, sourceOption, stringOption } from "./options.ts";
import { endpointFrom, tcpOptions } from "./sentinel.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { TcpSentinelTransport } from "../lib/sentinel/client.ts";
import {
  type PipelineStatus,
  statusFromCatalog,
  statusFromCoordinator,
  statusJson,
  statusLines,
} from "../lib/follow/status.ts";

const status: CommandSpec = {
  path: ["status"],
  summary: "Show what each stage of the pipeline is doing, and how far behind it is",
  description: `
Prints the follow process's state, the sentinel's positions, the lag in bytes
between them (receive: write_lsn → flush_lsn; apply: flush_lsn → replay_lsn),
the spool's files and bytes, and endpos. With --source, also the source's
current WAL position, the lag behind it and the WAL its slot retains.
Without --host: from the catalog and spool in --dir, the state being
"running" or "stopped" (a process running the receive or apply stage holds
<dir>/receive.pid or <dir>/apply.pid); apply is marked STALLED (JSON:
"stalled": true) while that process's watchdog finds it stuck: replay_lsn
still for --stall-timeout while changes wait. With --host: from the
coordinator (QUERY_STATUS), the state being init, streaming, done or error;
the spool and stalls are not visible from there.`,
  options: [
    dirOption,
    ...tcpOptions,
    { ...sourceOption, help: "Also read the source's current position and its slot" },
    {
      name: "slot-name",
      type: "string",
      value: "NAME",
      help: "The slot to read on the source (default: the one in the catalog, else pgferry)",
    },
    jsonOption,
  ],
  async run({ options, out }) {
    const host = stringOption(options, "host");
    const source = stringOption(options, "source");
    const slot = stringOption(options, "slot-name");
    let result: PipelineStatus;
    if (host !== undefined) {
      const transport = new TcpSentinelTransport(await endpointFrom(options, host));
      result = await statusFromCoordinator(transport, { source, slot: slot ?? "pgferry" });
    } else {
      using catalog = await Catalog.open(dirFrom(options));
      result = await statusFromCatalog(catalog, { source, slot });
    }
    if (options["json"] === true) {
      out(JSON.stringify(statusJson(result), null, 2));
    } else {
      for (const line of statusLines(result)) out(line);
    }
  },
};

/** `status`. */
export const statusCommands: CommandSpec[] = [status];
