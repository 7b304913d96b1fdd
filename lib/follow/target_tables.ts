/** What apply needs to know about the target's tables, asked once per table. */
import type { QueryResult } from "../pg/copy_connection.ts";
import type { TableName } from "../decode/change.ts";
import { qualifiedName, quoteLiteral } from "../pg/quote.ts";
import type { TargetTable } from "./sql.ts";

const TARGET_TABLE_SQL = (schema: string, table: string) => `
select c.relkind = 'p' as partitioned,
       to_json(array(select a.attname::text from pg_attribute a
                where a.attrelid = c.oid and a.attidentity = 'a' and not a.attisdropped)) as always_identity,
       coalesce((select json_agg(a.attname::text order by k.ord)
                   from unnest(key.indkey) with ordinality k(attnum, ord)
                   join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum),
                '[]') as key_columns,
       to_json(array(select a.attname::text from pg_attribute a
              where a.attrelid = c.oid and a.attgenerated <> '' and not a.attisdropped)) as generated,
       not exists (select from pg_index i
                    where i.indrelid = c.oid and (i.indisunique or i.indisexclusion)
                      and i.indexrelid is distinct from key.indexrelid)
       and not exists (select from pg_trigger t
                        where t.tgrelid = c.oid and not t.tgisinternal and t.tgenabled in ('R', 'A'))
       and not exists (select from pg_rewrite r
                        where r.ev_class = c.oid and r.rulename <> '_RETURN'
                          and r.ev_enabled in ('R', 'A')) as reorderable,
       (select json_object_agg(a.attname, quote_ident(tn.nspname) || '.' || quote_ident(t.typname))
          from pg_attribute a
          join pg_type t on t.oid = a.atttypid
          join pg_namespace tn on tn.oid = t.typnamespace
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as column_types,
       to_json(array(select a.attname::text from pg_attribute a join pg_type t on t.oid = a.atttypid
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                and (t.typcategory = 'A' or t.typdelim <> ','))) as array_columns
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  left join lateral (select i.indexrelid, i.indkey from pg_index i
                      where i.indrelid = c.oid and (i.indisreplident or i.indisprimary)
                      order by i.indisreplident desc limit 1) key on true
 where n.nspname = ${quoteLiteral(schema)} and c.relname = ${quoteLiteral(table)}`;

/** A cache of TargetTable by name, filled from the target on first use. */
export class TargetTables {
  readonly #query: (sql: string) => Promise<QueryResult>;
  readonly #cache = new Map<string, TargetTable>();

  /** `query` runs a simple query on the target. */
  constructor(query: (sql: string) => Promise<QueryResult>) {
    this.#query = query;
  }

  /** The last table asked for: runs of changes to one table skip the lookup. */
  #last: TargetTable | undefined;

  /** The cached entry, or undefined: then `load` it first. */
  cached(name: TableName): TargetTable | undefined {
    const last = this.#last;
    if (last !== undefined && last.table === name.table && last.schema === name.schema) return last;
    const hit = this.#cache.get(`${name.schema}.${name.table}`);
    if (hit !== undefined) this.#last = hit;
    return hit;
  }

  async load(name: TableName): Promise<TargetTable> {
    const hit = this.cached(name);
    if (hit) return hit;
    const { rows: [row] } = await this.#query(TARGET_TABLE_SQL(name.schema, name.table));
    if (row === undefined) {
      throw new RangeError(
        `Table ${qualifiedName(name.schema, name.table)} does not exist on the target`,
      );
    }
    const table: TargetTable = {
      schema: name.schema,
      table: name.table,
      partitioned: row[0] === "t",
      alwaysIdentity: new Set(JSON.parse(row[1]!) as string[]),
      keyColumns: JSON.parse(row[2]!) as string[],
      generated: new Set(JSON.parse(row[3]!) as string[]),
      reorderable: row[4] === "t",
      columnTypes: new Map(Object.entries(JSON.parse(row[5] ?? "{}") as Record<string, string>)),
      arrayColumns: new Set(JSON.parse(row[6] ?? "[]") as string[]),
    };
    this.#cache.set(`${name.schema}.${name.table}`, table);
    return table;
  }
}
