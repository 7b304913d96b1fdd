/**
 * `pgferry stream prune`: deletes the spool files whose changes have all been
 * applied, straight in --dir or through the coordinator (CLEANUP) with --host.
 */
import type { CommandSpec } from "./command.ts";
import { dirFrom, dirOption, jsonOption, stringOption } from "./options.ts";
import { endpointFrom, tcpOptions } from "./sentinel.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import { readSentinel } from "../lib/catalog/sentinel_store.ts";
import { formatLsn } from "../lib/lsn.ts";
import { TcpSentinelTransport } from "../lib/sentinel/client.ts";
import type { CleanupResult } from "../lib/sentinel/coordinator.ts";
import { pruneSpool } from "../lib/spool/prune.ts";

const prune: CommandSpec = {
  path: ["stream", "prune"],
  summary: "Delete spool files whose changes are all applied (up to replay_lsn)",
  description: `
A spool file goes when every transaction in it ends at or before replay_lsn;
the file being written is always kept. Without --host, works on <dir>/cdc and
reads replay_lsn from the catalog (safe while follow runs); with --host, asks
the coordinator of the running follow (CLEANUP, as pgcopydb). A follow process
also prunes by itself every --prune-interval.`,
  options: [
    dirOption,
    ...tcpOptions,
    { name: "dry-run", type: "boolean", help: "Say what would be deleted, delete nothing" },
    jsonOption,
  ],
  async run({ options, out }) {
    const dryRun = options["dry-run"] === true;
    const host = stringOption(options, "host");
    let result: CleanupResult & { files?: string[] };
    if (host !== undefined) {
      result = await new TcpSentinelTransport(await endpointFrom(options, host)).cleanup(dryRun);
    } else {
      const dir = dirFrom(options);
      using catalog = await Catalog.open(dir);
      result = await pruneSpool(dir, readSentinel(catalog.db).replayLsn, { dryRun });
      if (!dryRun && result.filesDeleted > 0n) {
        await catalog.log(
          "stream prune",
          `${result.filesDeleted} files, ${result.bytesFreed} bytes`,
        );
      }
    }
    if (options["json"] === true) {
      out(JSON.stringify({
        dry_run: dryRun,
        files_deleted: Number(result.filesDeleted),
        bytes_freed: Number(result.bytesFreed),
        safe_lsn: formatLsn(result.safeLsn),
        files: result.files ?? null,
      }));
      return;
    }
    for (const name of result.files ?? []) out(`${dryRun ? "would delete" : "deleted"} ${name}`);
    out(
      `${
        dryRun ? "dry run: would free" : "freed"
      } ${result.bytesFreed} bytes in ${result.filesDeleted} files (replay_lsn ${
        formatLsn(result.safeLsn)
      })`,
    );
  },
};

/** `stream prune`. */
export const pruneCommands: CommandSpec[] = [prune];
