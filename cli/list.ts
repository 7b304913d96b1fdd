/** `pgferry list …`: what the catalog in --dir knows, readable while a clone runs. */
import type { CommandSpec } from "./command.ts";
import { dirFrom, dirOption, jsonOption } from "./options.ts";
import { Catalog } from "../lib/catalog/catalog.ts";
import {
  formatBytes,
  formatDuration,
  formatProgress,
  formatTable,
  readPlan,
  readProgress,
} from "../lib/clone/progress.ts";

const progress: CommandSpec = {
  path: ["list", "progress"],
  summary: "Show the progress of the clone in --dir (steps, tables, running jobs)",
  description: `
Reads the catalog without taking its write lock, so it works from another
terminal while "pgferry clone" runs.`,
  options: [dirOption, jsonOption],
  async run({ options, out }) {
    using catalog = await Catalog.open(dirFrom(options));
    const report = readProgress(catalog.db);
    if (options["json"] === true) out(JSON.stringify(report, null, 2));
    else for (const line of formatProgress(report)) out(line);
  },
};

const tables: CommandSpec = {
  path: ["list", "tables"],
  summary: "List the tables the clone in --dir copies, largest first",
  options: [dirOption, jsonOption],
  async run({ options, out }) {
    using catalog = await Catalog.open(dirFrom(options));
    const plan = readPlan(catalog.db);
    if (options["json"] === true) {
      out(JSON.stringify(
        plan.map((t) => ({
          oid: t.oid,
          schema: t.schema,
          name: t.name,
          bytes: t.bytes,
          parts: t.parts.length,
          splitKey: t.splitKey,
          copyFormat: t.copyFormat,
          copyData: t.copyData,
        })),
        null,
        2,
      ));
      return;
    }
    for (
      const line of formatTable(
        ["oid", "table", "bytes", "parts", "split by", "format"],
        plan.map((t) => [
          String(t.oid),
          `${t.schema}.${t.name}`,
          formatBytes(t.bytes),
          String(t.parts.length),
          t.splitKey ?? "-",
          t.copyData ? t.copyFormat : "no data",
        ]),
      )
    ) out(line);
  },
};

const tableParts: CommandSpec = {
  path: ["list", "table-parts"],
  summary: "List the parts of the split tables of the clone in --dir",
  options: [dirOption, jsonOption],
  async run({ options, out }) {
    using catalog = await Catalog.open(dirFrom(options));
    const rows = catalog.db.prepare(
      `select t.nspname, t.relname, p.part, p.parts, p.where_clause, p.done_at, p.rows, p.duration_ms
         from clone_table_part p join clone_table t on t.oid = p.table_oid
        where p.parts > 1 order by t.bytes desc, t.oid, p.part`,
    ).all() as Record<string, string | number | null>[];
    if (options["json"] === true) {
      out(JSON.stringify(rows, null, 2));
      return;
    }
    for (
      const line of formatTable(
        ["table", "part", "range", "rows", "copy"],
        rows.map((r) => [
          `${r["nspname"]}.${r["relname"]}`,
          `${Number(r["part"]) + 1}/${r["parts"]}`,
          String(r["where_clause"] ?? ""),
          r["done_at"] === null ? "-" : String(r["rows"]),
          r["done_at"] === null ? "-" : formatDuration(Number(r["duration_ms"])),
        ]),
      )
    ) out(line);
  },
};

const indexes: CommandSpec = {
  path: ["list", "indexes"],
  summary: "List the indexes and constraints the clone in --dir builds",
  options: [dirOption, jsonOption],
  async run({ options, out }) {
    using catalog = await Catalog.open(dirFrom(options));
    const rows = catalog.db.prepare(
      `select i.nspname, i.relname, i.kind, i.constraint_name, i.done_at, i.duration_ms,
              t.nspname as table_nspname, t.relname as table_relname
         from clone_index i left join clone_table t on t.oid = i.table_oid
        order by t.nspname, t.relname, i.relname`,
    ).all() as Record<string, string | number | null>[];
    if (options["json"] === true) {
      out(JSON.stringify(rows, null, 2));
      return;
    }
    for (
      const line of formatTable(
        ["index", "table", "kind", "build"],
        rows.map((r) => [
          `${r["nspname"]}.${r["relname"]}`,
          `${r["table_nspname"]}.${r["table_relname"]}`,
          String(r["kind"]),
          r["done_at"] === null ? "-" : formatDuration(Number(r["duration_ms"])),
        ]),
      )
    ) out(line);
  },
};

/** The list commands. */
export const listCommands: CommandSpec[] = [progress, tables, tableParts, indexes];
