/**
 * The source's tables as the text decoders (test_decoding, wal2json) need
 * them: which columns form the replica identity key and which are generated.
 */
import type { Relation, RelationColumn, RelationLookup } from "../decode/change.ts";
import type { Sql } from "../pg/connect.ts";

// No parameters. Ordinary and partitioned tables outside the system schemas.
const RELATIONS_SQL = `
with keys as (
  select i.indrelid, unnest(i.indkey) as attnum
    from pg_index i join pg_class c on c.oid = i.indrelid
   where (c.relreplident = 'd' and i.indisprimary) or (c.relreplident = 'i' and i.indisreplident)
)
select n.nspname as schema, c.relname as table, c.oid::int8 as relid, c.relreplident::text as ident,
       json_agg(json_build_object(
         'name', a.attname,
         'typeOid', a.atttypid::int8,
         'typeName', format_type(a.atttypid, null),
         'typeMod', a.atttypmod,
         'generated', a.attgenerated <> '',
         'key', exists (select 1 from keys k where k.indrelid = c.oid and k.attnum = a.attnum)
       ) order by a.attnum) as columns
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
 where c.relkind in ('r', 'p')
   and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
 group by n.nspname, c.relname, c.oid, c.relreplident`;

/** Reads every table's Relation from the source. */
export async function loadRelations(sql: Sql): Promise<Map<string, Relation>> {
  const rows = await sql.unsafe(RELATIONS_SQL);
  const relations = new Map<string, Relation>();
  for (const row of rows) {
    const relation: Relation = {
      schema: row["schema"] as string,
      table: row["table"] as string,
      relid: Number(row["relid"]),
      replicaIdentity: row["ident"] as Relation["replicaIdentity"],
      columns: row["columns"] as RelationColumn[],
    };
    relations.set(`${relation.schema}.${relation.table}`, relation);
  }
  return relations;
}

/** A RelationLookup over a loaded map. */
export function relationLookup(relations: Map<string, Relation>): RelationLookup {
  return (schema, table) => relations.get(`${schema}.${table}`);
}
