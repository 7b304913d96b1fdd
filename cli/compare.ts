/** `pgferry compare schema|data`: is the target the same as the source? */
import type { CommandSpec } from "./command.ts";
import {
  filtersFrom,
  filtersOption,
  intOption,
  jsonOption,
  requiredOption,
  sourceOption,
  targetOption,
} from "./options.ts";
import { tableJobsOption } from "./clone.ts";
import { OperatorError } from "../lib/errors.ts";
import { compareData } from "../lib/clone/compare_data.ts";
import { compareSchema } from "../lib/clone/compare_schema.ts";
import { formatTable } from "../lib/clone/progress.ts";

function shorten(text: string | null): string {
  if (text === null) return "-";
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

const schema: CommandSpec = {
  path: ["compare", "schema"],
  summary: "Compare the schemas of source and target, object by object",
  description: `
Compares schemas, extensions, tables and columns, constraints, indexes,
triggers, rules, policies, views, sequences, functions, types and comments
(not owners or privileges). Prints the differences and exits 1 when there are
any. With --filters, what the filters leave out is not compared.`,
  options: [sourceOption, targetOption, filtersOption, jsonOption],
  async run({ options, out }) {
    const result = await compareSchema(
      requiredOption(options, "source", "PGFERRY_SOURCE_PGURI"),
      requiredOption(options, "target", "PGFERRY_TARGET_PGURI"),
      { filters: await filtersFrom(options) },
    );
    if (options["json"] === true) {
      out(JSON.stringify(result, null, 2));
    } else if (result.equal) {
      out(`${result.objects} objects compared: the schemas are the same`);
    } else {
      for (const d of result.differences) {
        out(`${d.change} on target: ${d.kind} ${d.name}`);
        if (d.change === "different") {
          out(`  source: ${shorten(d.source)}`);
          out(`  target: ${shorten(d.target)}`);
        }
      }
    }
    if (!result.equal) {
      throw new OperatorError(
        `The schemas differ: ${result.differences.length} of ${result.objects} objects`,
      );
    }
  },
};

const data: CommandSpec = {
  path: ["compare", "data"],
  summary: "Compare the rows of every table (count and checksum) and the sequences",
  description: `
For each table of the source: the row count and an MD5 of all rows in key
order, computed on source and target at the same time (--table-jobs tables at
once); for each sequence, last_value and is_called. Prints one line per table
and exits 1 naming the tables that differ.`,
  options: [sourceOption, targetOption, filtersOption, tableJobsOption, jsonOption],
  async run({ options, out }) {
    const result = await compareData(
      requiredOption(options, "source", "PGFERRY_SOURCE_PGURI"),
      requiredOption(options, "target", "PGFERRY_TARGET_PGURI"),
      {
        filters: await filtersFrom(options),
        jobs: intOption(options, "table-jobs", 1, 256) ?? 4,
      },
    );
    if (options["json"] === true) {
      out(JSON.stringify(result, null, 2));
    } else {
      for (
        const line of formatTable(
          ["table", "source rows", "target rows", "source checksum", "target checksum", "result"],
          result.tables.map((t) => [
            t.table,
            t.source === null ? "-" : String(t.source.rows),
            t.target === null ? "-" : String(t.target.rows),
            t.source?.checksum ?? "-",
            t.target?.checksum ?? "-",
            t.equal ? "same" : t.error ?? "DIFFERENT",
          ]),
        )
      ) out(line);
    }
    if (!result.equal) {
      throw new OperatorError(
        `The data differ in ${result.differing.length} table(s): ${result.differing.join(", ")}`,
      );
    }
  },
};

/** The compare commands. */
export const compareCommands: CommandSpec[] = [schema, data];
