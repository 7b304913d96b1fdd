/**
 * Which changes follow leaves out under `--filters`: those of tables the clone
 * does not copy (excluded schemas and tables, tables outside include-only, and
 * tables whose data is excluded), partitions judged with their ancestors, as
 * the clone judges them.
 */
import type { Change, TableName } from "../decode/change.ts";
import {
  type Filters,
  filtersAreEmpty,
  type QualifiedName,
  tableDataExcluded,
  tableExcluded,
} from "../clone/filters.ts";
import { withConnection } from "../pg/connect.ts";

const ANCESTORS_SQL = `
with recursive up(relid, ancestor) as (
  select inhrelid, inhparent from pg_inherits
  union
  select up.relid, i.inhparent from up join pg_inherits i on i.inhrelid = up.ancestor
)
select n.nspname as schema, c.relname as name,
       coalesce(json_agg(json_build_object('schema', an.nspname, 'name', a.relname))
                filter (where a.oid is not null), '[]') as ancestors
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join up on up.relid = c.oid
  left join pg_class a on a.oid = up.ancestor
  left join pg_namespace an on an.oid = a.relnamespace
 where c.relkind in ('r', 'p')
   and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
 group by n.nspname, c.relname`;

/**
 * Decides per table; undefined when the filters leave everything in (then
 * nothing connects to the source: no start-up time is spent on it).
 */
export async function changeFilter(
  source: string,
  filters: Filters | undefined,
): Promise<((change: Change) => Change | undefined) | undefined> {
  if (filters === undefined || filtersAreEmpty(filters)) return undefined;
  const ancestors = new Map<string, QualifiedName[]>();
  const rows = await withConnection(source, "source", (sql) => sql.unsafe(ANCESTORS_SQL));
  for (const row of rows) {
    ancestors.set(`${row["schema"]}.${row["name"]}`, row["ancestors"] as QualifiedName[]);
  }
  const excluded = new Map<string, boolean>();
  const leftOut = (table: TableName): boolean => {
    const key = `${table.schema}.${table.table}`;
    let out = excluded.get(key);
    if (out === undefined) {
      const name = { schema: table.schema, name: table.table };
      const family = ancestors.get(key) ?? [];
      out = tableExcluded(filters, name, family) || tableDataExcluded(filters, name, family);
      excluded.set(key, out);
    }
    return out;
  };
  return (change) => {
    switch (change.tag) {
      case "Insert":
      case "Update":
      case "Delete":
        return leftOut(change.relation) ? undefined : change;
      case "Truncate": {
        const relations = change.relations.filter((r) => !leftOut(r));
        if (relations.length === change.relations.length) return change;
        return relations.length === 0 ? undefined : { ...change, relations };
      }
      default:
        return change;
    }
  };
}
