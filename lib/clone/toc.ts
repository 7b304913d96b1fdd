/**
 * The table of contents of a pg_dump archive, as `pg_restore --list --verbose`
 * prints it, and the `--use-list` files made from it.
 *
 * ```
 * 220; 1259 16422 TABLE my schema t 1 postgres
 * ;	depends on: 6
 * dumpId; catalogOid objectOid DESC namespace tag owner
 * ```
 *
 * `catalogOid objectOid` name the object in the source catalog (1259 pg_class
 * for tables and indexes, 2606 pg_constraint, …; `0 0` for comments and ACLs,
 * which depend on their object instead). Names are printed unquoted, so the
 * namespace is recognised against the source's schema names.
 */

/** One archive entry. */
export interface TocEntry {
  dumpId: number;
  catalogOid: number;
  objectOid: number;
  /** `TABLE`, `FK CONSTRAINT`, `COMMENT`, … */
  desc: string;
  /** Schema name, or "" for objects outside schemas. */
  namespace: string;
  /** The rest of the line: the object's name (and the owner after it). */
  rest: string;
  /** The line as pg_restore printed it; a `--use-list` file is made of these. */
  line: string;
  /** dumpIds this entry depends on. */
  dependsOn: number[];
}

/** pg_class, pg_constraint, pg_namespace and pg_largeobject as catalog OIDs. */
export const PG_CLASS = 1259;
export const PG_CONSTRAINT = 2606;
export const PG_NAMESPACE = 2615;

// Every "desc" pg_dump writes that has more than one word, longest first.
const MULTI_WORD_DESCS = [
  "PUBLICATION TABLES IN SCHEMA",
  "MATERIALIZED VIEW DATA",
  "TEXT SEARCH CONFIGURATION",
  "TEXT SEARCH DICTIONARY",
  "FOREIGN DATA WRAPPER",
  "TEXT SEARCH TEMPLATE",
  "DATABASE PROPERTIES",
  "TEXT SEARCH PARSER",
  "PROCEDURAL LANGUAGE",
  "PUBLICATION TABLE",
  "SEQUENCE OWNED BY",
  "MATERIALIZED VIEW",
  "CHECK CONSTRAINT",
  "OPERATOR FAMILY",
  "BLOB METADATA",
  "OPERATOR CLASS",
  "FOREIGN SERVER",
  "SECURITY LABEL",
  "ACCESS METHOD",
  "EVENT TRIGGER",
  "FK CONSTRAINT",
  "FOREIGN TABLE",
  "INDEX ATTACH",
  "ROW SECURITY",
  "SEQUENCE SET",
  "USER MAPPING",
  "DEFAULT ACL",
  "SHELL TYPE",
  "TABLE DATA",
  "LARGE OBJECT",
];

/** Parses `pg_restore --list --verbose` output. `schemas` are the source's schema names. */
export function parseToc(text: string, schemas: string[]): TocEntry[] {
  const byLength = [...schemas].sort((a, b) => b.length - a.length);
  const entries: TocEntry[] = [];
  for (const line of text.split("\n")) {
    const depends = /^;\s*depends on:\s*([\d ]*)$/.exec(line);
    if (depends) {
      const last = entries[entries.length - 1];
      if (last) last.dependsOn.push(...depends[1]!.trim().split(/\s+/).filter(Boolean).map(Number));
      continue;
    }
    const match = /^(\d+); (\d+) (\d+) (.*)$/.exec(line);
    if (!match) continue;
    let rest = match[4]!;
    const desc = MULTI_WORD_DESCS.find((d) => rest.startsWith(`${d} `)) ??
      rest.slice(0, Math.max(0, rest.indexOf(" ")));
    rest = rest.slice(desc.length + 1);
    let namespace = "";
    if (rest.startsWith("- ")) {
      rest = rest.slice(2);
    } else {
      const schema = byLength.find((s) => rest.startsWith(`${s} `));
      if (schema !== undefined) {
        namespace = schema;
        rest = rest.slice(schema.length + 1);
      }
    }
    entries.push({
      dumpId: Number(match[1]),
      catalogOid: Number(match[2]),
      objectOid: Number(match[3]),
      desc,
      namespace,
      rest,
      line,
      dependsOn: [],
    });
  }
  return entries;
}

/**
 * The dumpIds of the entries `seed` picks, and of every entry that depends on
 * one of them, directly or not: what cannot be restored once they are left out.
 */
export function dependentClosure(entries: TocEntry[], seed: (e: TocEntry) => boolean): Set<number> {
  const dependents = new Map<number, number[]>();
  for (const entry of entries) {
    for (const id of entry.dependsOn) {
      const list = dependents.get(id);
      if (list) list.push(entry.dumpId);
      else dependents.set(id, [entry.dumpId]);
    }
  }
  const out = new Set<number>();
  const stack = entries.filter(seed).map((e) => e.dumpId);
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (out.has(id)) continue;
    out.add(id);
    for (const next of dependents.get(id) ?? []) stack.push(next);
  }
  return out;
}

/** A `--use-list` file: the lines of the entries that are kept. */
export function useList(entries: TocEntry[], keep: (e: TocEntry) => boolean): string {
  return entries.filter(keep).map((e) => e.line).join("\n") + "\n";
}
