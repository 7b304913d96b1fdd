/**
 * Filters in pgcopydb's INI format: which schemas, tables, indexes and table
 * data a clone leaves out.
 *
 * ```ini
 * [include-only-schema]   ; or [exclude-schema]: one schema name per line
 * public
 * [include-only-table]    ; or [exclude-table]: schema.table, quoted as in SQL
 * public.orders
 * "Sales"."Q1 results"
 * [exclude-index]
 * public.orders_created_idx
 * [exclude-table-data]    ; the table is created, its rows are not copied
 * public.audit_log
 * ```
 *
 * Only section names and keys count; anything after `=` is ignored. Lines
 * starting with `#` or `;` are comments. A partition follows its partitioned
 * table: including or excluding the parent includes or excludes its partitions.
 */

/** `schema.name` as written in the filters, unquoted. */
export interface QualifiedName {
  schema: string;
  name: string;
}

/** Parsed filters. Empty lists mean "no such rule". */
export interface Filters {
  includeOnlySchema: string[];
  excludeSchema: string[];
  includeOnlyTable: QualifiedName[];
  excludeTable: QualifiedName[];
  excludeIndex: QualifiedName[];
  excludeTableData: QualifiedName[];
}

const SECTIONS = {
  "include-only-schema": "includeOnlySchema",
  "exclude-schema": "excludeSchema",
  "include-only-table": "includeOnlyTable",
  "exclude-table": "excludeTable",
  "exclude-index": "excludeIndex",
  "exclude-table-data": "excludeTableData",
} as const;

/** No filter at all. */
export function noFilters(): Filters {
  return {
    includeOnlySchema: [],
    excludeSchema: [],
    includeOnlyTable: [],
    excludeTable: [],
    excludeIndex: [],
    excludeTableData: [],
  };
}

/** True when the filters leave everything in. */
export function filtersAreEmpty(filters: Filters): boolean {
  return Object.values(filters).every((list) => list.length === 0);
}

/**
 * Parses the INI text. Throws a `SyntaxError` naming the line for an unknown
 * section or a malformed name, and for pgcopydb's incompatible combinations.
 */
export function parseFilters(text: string, source = "filters"): Filters {
  const filters = noFilters();
  let section: (typeof SECTIONS)[keyof typeof SECTIONS] | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const where = `${source}:${i + 1}`;
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    const header = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (header) {
      const name = header[1]!.toLowerCase();
      if (!(name in SECTIONS)) {
        throw new SyntaxError(
          `Unknown filter section "[${header[1]}]" at ${where}: expected one of ${
            Object.keys(SECTIONS).map((s) => `[${s}]`).join(", ")
          }`,
        );
      }
      section = SECTIONS[name as keyof typeof SECTIONS];
      return;
    }
    if (section === undefined) {
      throw new SyntaxError(`Filter entry "${line}" at ${where} is outside any [section]`);
    }
    const key = stripValue(line);
    const parts = splitName(key, where);
    if (section === "includeOnlySchema" || section === "excludeSchema") {
      if (parts.length !== 1) {
        throw new SyntaxError(`Invalid schema name "${key}" at ${where}: expected one name`);
      }
      filters[section].push(parts[0]!);
    } else {
      if (parts.length !== 2) {
        throw new SyntaxError(
          `Invalid name "${key}" at ${where}: expected schema.name, e.g. public.orders`,
        );
      }
      filters[section].push({ schema: parts[0]!, name: parts[1]! });
    }
  });
  if (filters.includeOnlyTable.length > 0) {
    if (filters.excludeTable.length > 0 || filters.excludeSchema.length > 0) {
      throw new SyntaxError(
        `Filters in ${source} combine [include-only-table] with [exclude-table] or [exclude-schema], which pgcopydb refuses too`,
      );
    }
  }
  if (filters.includeOnlySchema.length > 0 && filters.excludeSchema.length > 0) {
    throw new SyntaxError(
      `Filters in ${source} combine [include-only-schema] with [exclude-schema]`,
    );
  }
  return filters;
}

/** The key part of `key = value` (values are ignored), respecting double quotes. */
function stripValue(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') quoted = !quoted;
    else if (c === "=" && !quoted) return line.slice(0, i).trim();
  }
  return line;
}

/** `a.b`, `"a"."b.c"`, `"x""y"` → the unquoted parts. */
function splitName(text: string, where: string): string[] {
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    let part = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new SyntaxError(`Unterminated quote in "${text}" at ${where}`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== ".") part += text[i++];
      part = part.trim();
    }
    if (part === "") throw new SyntaxError(`Empty name in "${text}" at ${where}`);
    parts.push(part);
    if (i >= text.length) return parts;
    if (text[i] !== ".") throw new SyntaxError(`Invalid name "${text}" at ${where}`);
    i++;
  }
}

function listed(list: QualifiedName[], schema: string, name: string): boolean {
  return list.some((entry) => entry.schema === schema && entry.name === name);
}

/** Whether a schema's objects are left out. */
export function schemaExcluded(filters: Filters, schema: string): boolean {
  if (filters.includeOnlySchema.length > 0 && !filters.includeOnlySchema.includes(schema)) {
    return true;
  }
  return filters.excludeSchema.includes(schema);
}

/**
 * Whether a table (or matview, foreign table) is left out. `ancestors` are the
 * partitioned tables above a partition, nearest first.
 */
export function tableExcluded(
  filters: Filters,
  table: QualifiedName,
  ancestors: QualifiedName[] = [],
): boolean {
  if (schemaExcluded(filters, table.schema)) return true;
  const family = [table, ...ancestors];
  if (filters.includeOnlyTable.length > 0) {
    if (!family.some((t) => listed(filters.includeOnlyTable, t.schema, t.name))) return true;
  }
  return family.some((t) => listed(filters.excludeTable, t.schema, t.name));
}

/** Whether a table is created but its rows not copied. */
export function tableDataExcluded(
  filters: Filters,
  table: QualifiedName,
  ancestors: QualifiedName[] = [],
): boolean {
  return [table, ...ancestors].some((t) => listed(filters.excludeTableData, t.schema, t.name));
}

/** Whether an index (and the constraint it backs) is left out. */
export function indexExcluded(filters: Filters, index: QualifiedName): boolean {
  return listed(filters.excludeIndex, index.schema, index.name);
}
