/**
 * Catalog queries the clone runs on the source (and compare on both sides).
 * Each runs as is in psql; none takes parameters. Run them with
 * `search_path = ''` so that every name in a definition comes out qualified.
 */

/** Schemas other than PostgreSQL's own. */
export const SCHEMAS = `
select n.oid::int8 as oid, n.nspname
  from pg_catalog.pg_namespace n
 where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
 order by n.nspname`;

/**
 * Every relation a filter can name (tables, partitioned tables, matviews,
 * foreign tables, views, sequences) with its partition ancestors and, for a
 * sequence, the table that owns it. Extension members are left out: CREATE
 * EXTENSION makes them.
 */
export const RELATIONS = `
select c.oid::int8 as oid, n.nspname, c.relname, c.relkind::text as relkind,
       coalesce((select json_agg(json_build_array(an.nspname, ac.relname) order by a.depth)
                   from (select relid, row_number() over () as depth
                           from pg_catalog.pg_partition_ancestors(c.oid)) a
                   join pg_catalog.pg_class ac on ac.oid = a.relid
                   join pg_catalog.pg_namespace an on an.oid = ac.relnamespace
                  where a.relid <> c.oid), '[]') as ancestors,
       (select d.refobjid::int8 from pg_catalog.pg_depend d
         where c.relkind = 'S' and d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid
           and d.refclassid = 'pg_catalog.pg_class'::regclass and d.deptype in ('a', 'i')
         limit 1) as owner_oid
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p', 'm', 'f', 'v', 'S')
   and c.relpersistence <> 't'
   and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
   and not exists (select 1 from pg_catalog.pg_depend e
                    where e.classid = 'pg_catalog.pg_class'::regclass and e.objid = c.oid
                      and e.deptype = 'e')
 order by n.nspname, c.relname`;

/**
 * Tables whose rows a clone copies: plain tables and partitions. For each, the
 * columns COPY names (generated ones left out), its size, whether binary COPY
 * is safe (every column of a built-in type, an enum, or a domain over a
 * built-in type: binary arrays and composites carry type OIDs, which differ
 * between servers), and an integer key to split it by.
 */
export const TABLES = `
select c.oid::int8 as oid, n.nspname, c.relname,
       pg_catalog.pg_table_size(c.oid)::int8 as bytes,
       pg_catalog.pg_relation_size(c.oid)::int8 as main_bytes,
       greatest(c.reltuples, 0)::int8 as reltuples,
       coalesce((select json_agg(a.attname order by a.attnum)
                   from pg_catalog.pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and a.attgenerated = ''), '[]') as columns,
       (select count(*) from pg_catalog.pg_attribute a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
           and a.attgenerated <> '')::int as generated_columns,
       coalesce((select bool_and(
                   case
                     when t.typtype = 'e' then true
                     when t.typtype = 'd' then bt.oid < 16384 and bt.typtype in ('b', 'r', 'm')
                                               and bt.typsend <> 0 and bt.typreceive <> 0
                     else t.oid < 16384 and t.typtype in ('b', 'r', 'm')
                          and t.typsend <> 0 and t.typreceive <> 0
                   end)
                   from pg_catalog.pg_attribute a
                   join pg_catalog.pg_type t on t.oid = a.atttypid
                   left join pg_catalog.pg_type bt on bt.oid = t.typbasetype
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and a.attgenerated = ''), true) as binary_safe,
       (select a.attname
          from pg_catalog.pg_index i
          join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
         where i.indrelid = c.oid and i.indisunique and i.indisvalid and i.indnkeyatts = 1
           and i.indexprs is null and i.indpred is null and a.attnotnull
           and a.atttypid in ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype,
                              'pg_catalog.int8'::regtype)
         order by i.indisprimary desc, i.indexrelid
         limit 1) as split_key
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.relkind = 'r' and c.relpersistence <> 't'
   and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
   and not exists (select 1 from pg_catalog.pg_depend e
                    where e.classid = 'pg_catalog.pg_class'::regclass and e.objid = c.oid
                      and e.deptype = 'e')
 order by bytes desc, c.oid`;

/**
 * Valid indexes of plain tables and partitions, with the primary key, unique
 * or exclusion constraint each one backs, and what pg_dump would add to its
 * CREATE INDEX (replica identity, CLUSTER, per-column statistics targets).
 */
export const INDEXES = `
select i.indexrelid::int8 as oid, i.indrelid::int8 as table_oid, n.nspname, ic.relname,
       tn.nspname as table_nspname, tc.relname as table_relname,
       pg_catalog.pg_get_indexdef(i.indexrelid) as indexdef,
       pg_catalog.pg_relation_size(i.indexrelid)::int8 as bytes,
       i.indisreplident, i.indisclustered,
       con.oid::int8 as constraint_oid, con.conname, con.contype::text as contype,
       pg_catalog.pg_get_constraintdef(con.oid) as constraintdef,
       con.condeferrable, con.condeferred,
       coalesce((select json_agg(json_build_array(a.attnum, a.attstattarget) order by a.attnum)
                   from pg_catalog.pg_attribute a
                  where a.attrelid = i.indexrelid and a.attstattarget >= 0), '[]') as statistics
  from pg_catalog.pg_index i
  join pg_catalog.pg_class ic on ic.oid = i.indexrelid
  join pg_catalog.pg_namespace n on n.oid = ic.relnamespace
  join pg_catalog.pg_class tc on tc.oid = i.indrelid
  join pg_catalog.pg_namespace tn on tn.oid = tc.relnamespace
  left join pg_catalog.pg_constraint con
         on con.conindid = i.indexrelid and con.conrelid = i.indrelid
        and con.contype in ('p', 'u', 'x')
 where tc.relkind = 'r' and i.indisvalid and i.indislive
 order by i.indrelid, pg_catalog.pg_relation_size(i.indexrelid) desc, i.indexrelid`;

/** Large objects. */
export const LARGE_OBJECTS = `
select oid::int8 as oid from pg_catalog.pg_largeobject_metadata order by oid`;

/**
 * Tables whose rows `compare data` checks (plain tables and partitions), with
 * every column in order and the key to sort the rows by: the primary key, else
 * a unique index over NOT NULL columns, else none (rows sort by their text).
 * Key columns that have a collation sort with "C", the same on any server.
 */
export const COMPARED_TABLES = `
select c.oid::int8 as oid, n.nspname, c.relname,
       coalesce((select json_agg(json_build_array(an.nspname, ac.relname) order by a.depth)
                   from (select relid, row_number() over () as depth
                           from pg_catalog.pg_partition_ancestors(c.oid)) a
                   join pg_catalog.pg_class ac on ac.oid = a.relid
                   join pg_catalog.pg_namespace an on an.oid = ac.relnamespace
                  where a.relid <> c.oid), '[]') as ancestors,
       coalesce((select json_agg(a.attname order by a.attnum)
                   from pg_catalog.pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]') as columns,
       (select json_agg(json_build_array(a.attname, t.typcollation <> 0) order by k.ord)
          from (select i.indkey
                  from pg_catalog.pg_index i
                 where i.indrelid = c.oid and i.indisunique and i.indisvalid
                   and i.indexprs is null and i.indpred is null
                   and not exists (select 1 from pg_catalog.pg_attribute na
                                    where na.attrelid = c.oid
                                      and na.attnum = any (i.indkey::int2[]) and not na.attnotnull)
                 order by i.indisprimary desc, i.indnkeyatts, i.indexrelid
                 limit 1) i
          cross join lateral unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
          join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
          join pg_catalog.pg_type t on t.oid = a.atttypid) as key
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.relkind = 'r' and c.relpersistence <> 't'
   and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
   and not exists (select 1 from pg_catalog.pg_depend e
                    where e.classid = 'pg_catalog.pg_class'::regclass and e.objid = c.oid
                      and e.deptype = 'e')
 order by pg_catalog.pg_table_size(c.oid) desc, n.nspname, c.relname`;

/** Sequences and their state, for `compare data`. */
export const COMPARED_SEQUENCES = `
select n.nspname, c.relname, owner_n.nspname as owner_nspname, owner.relname as owner_relname
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  left join pg_catalog.pg_depend d
         on d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid
        and d.refclassid = 'pg_catalog.pg_class'::regclass and d.deptype in ('a', 'i')
  left join pg_catalog.pg_class owner on owner.oid = d.refobjid
  left join pg_catalog.pg_namespace owner_n on owner_n.oid = owner.relnamespace
 where c.relkind = 'S'
   and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
   and not exists (select 1 from pg_catalog.pg_depend e
                    where e.classid = 'pg_catalog.pg_class'::regclass and e.objid = c.oid
                      and e.deptype = 'e')
 order by n.nspname, c.relname`;

/**
 * Every object `compare schema` compares, one row each: its kind, a name that
 * is the same on any server, its definition as PostgreSQL prints it, and the
 * schema and relation it belongs to (for filters). Owners and privileges are
 * left out (`--no-owner`, `--no-acl`), and so are extension members.
 */
export const SCHEMA_OBJECTS = `
with rels as (
  select c.oid, n.nspname, c.relname, c.relkind
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
     and c.relpersistence <> 't'
     and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
     and not exists (select 1 from pg_catalog.pg_depend e
                      where e.classid = 'pg_catalog.pg_class'::regclass and e.objid = c.oid
                        and e.deptype = 'e')
), funcs as (
  select p.oid, n.nspname, p.proname, p.prokind
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
   where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
     and not exists (select 1 from pg_catalog.pg_depend e
                      where e.classid = 'pg_catalog.pg_proc'::regclass and e.objid = p.oid
                        and e.deptype = 'e')
), types as (
  select t.oid, n.nspname, t.typname, t.typtype, t.typrelid, t.typbasetype, t.typtypmod,
         t.typnotnull, t.typdefault
    from pg_catalog.pg_type t
    join pg_catalog.pg_namespace n on n.oid = t.typnamespace
   where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
     and t.typtype in ('e', 'd', 'c', 'r')
     and (t.typtype <> 'c' or (select relkind from pg_catalog.pg_class where oid = t.typrelid) = 'c')
     and not exists (select 1 from pg_catalog.pg_depend e
                      where e.classid = 'pg_catalog.pg_type'::regclass and e.objid = t.oid
                        and e.deptype = 'e')
)
select 'schema' as kind, n.nspname as name, '' as definition, n.nspname, null as relname
  from pg_catalog.pg_namespace n
 where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
union all
select 'extension', x.extname, x.extversion || ' in ' || n.nspname, null, null
  from pg_catalog.pg_extension x join pg_catalog.pg_namespace n on n.oid = x.extnamespace
union all
select case r.relkind when 'r' then 'table' when 'p' then 'partitioned table' when 'v' then 'view'
                      when 'm' then 'materialized view' when 'S' then 'sequence'
                      else 'foreign table' end,
       r.nspname || '.' || r.relname,
       concat_ws(' ',
         case when c.relpersistence = 'u' then 'unlogged' end,
         (select 'inherits ' || string_agg(i.inhparent::regclass::text, ', ' order by i.inhseqno)
            from pg_catalog.pg_inherits i where i.inhrelid = r.oid and not c.relispartition),
         case when c.relispartition then 'partition of ' || (select i.inhparent::regclass::text
            from pg_catalog.pg_inherits i where i.inhrelid = r.oid) || ' '
            || pg_catalog.pg_get_expr(c.relpartbound, c.oid) end,
         case when r.relkind = 'p' then 'partition by ' || pg_catalog.pg_get_partkeydef(r.oid) end,
         case when r.relkind in ('v', 'm') then pg_catalog.pg_get_viewdef(r.oid) end,
         case when c.reloptions is not null then 'with ' || array_to_string(c.reloptions, ',') end,
         case when c.relreplident <> 'd' and r.relkind in ('r', 'p')
              then 'replica identity ' || c.relreplident::text end,
         case when c.relrowsecurity then 'row level security' end),
       r.nspname, r.relname
  from rels r join pg_catalog.pg_class c on c.oid = r.oid
union all
select 'column', r.nspname || '.' || r.relname || '.' || a.attname,
       concat_ws(' ', pg_catalog.format_type(a.atttypid, a.atttypmod),
         case when a.attnotnull then 'not null' end,
         case when a.attcollation <> 0 and a.attcollation <> t.typcollation
              then 'collate ' || a.attcollation::regcollation::text end,
         case a.attidentity when 'a' then 'generated always as identity'
                            when 'd' then 'generated by default as identity' end,
         case when a.attgenerated = 's' then 'generated always as '
              || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ' stored'
              when d.adbin is not null then 'default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid)
         end,
         'position ' || (select count(*) from pg_catalog.pg_attribute b
                          where b.attrelid = a.attrelid and b.attnum > 0 and not b.attisdropped
                            and b.attnum <= a.attnum)),
       r.nspname, r.relname
  from rels r
  join pg_catalog.pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  join pg_catalog.pg_type t on t.oid = a.atttypid
  left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where r.relkind <> 'S'
union all
select 'constraint', r.nspname || '.' || r.relname || '.' || con.conname,
       pg_catalog.pg_get_constraintdef(con.oid), r.nspname, r.relname
  from pg_catalog.pg_constraint con join rels r on r.oid = con.conrelid
union all
select 'index', n.nspname || '.' || ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid)
       || case when i.indisreplident then ' replica identity' else '' end
       || case when i.indisclustered then ' clustered' else '' end,
       r.nspname, r.relname
  from pg_catalog.pg_index i
  join rels r on r.oid = i.indrelid
  join pg_catalog.pg_class ic on ic.oid = i.indexrelid
  join pg_catalog.pg_namespace n on n.oid = ic.relnamespace
union all
select 'trigger', r.nspname || '.' || r.relname || '.' || tg.tgname,
       pg_catalog.pg_get_triggerdef(tg.oid) || ' ' || tg.tgenabled::text, r.nspname, r.relname
  from pg_catalog.pg_trigger tg join rels r on r.oid = tg.tgrelid
 where not tg.tgisinternal
union all
select 'rule', r.nspname || '.' || r.relname || '.' || rw.rulename,
       pg_catalog.pg_get_ruledef(rw.oid), r.nspname, r.relname
  from pg_catalog.pg_rewrite rw join rels r on r.oid = rw.ev_class
 where rw.rulename <> '_RETURN'
union all
select 'policy', r.nspname || '.' || r.relname || '.' || p.polname,
       concat_ws(' ', p.polcmd::text, p.polpermissive::text,
                 pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                 pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)),
       r.nspname, r.relname
  from pg_catalog.pg_policy p join rels r on r.oid = p.polrelid
union all
select 'sequence definition', r.nspname || '.' || r.relname,
       concat_ws(' ', s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                 s.seqcache, s.seqcycle),
       r.nspname, r.relname
  from pg_catalog.pg_sequence s join rels r on r.oid = s.seqrelid
union all
select case f.prokind when 'p' then 'procedure' when 'a' then 'aggregate'
                      when 'w' then 'window function' else 'function' end,
       f.nspname || '.' || f.proname || '(' || pg_catalog.pg_get_function_identity_arguments(f.oid) || ')',
       case when f.prokind = 'a' then pg_catalog.pg_get_function_result(f.oid)
            else pg_catalog.pg_get_functiondef(f.oid) end,
       f.nspname, null
  from funcs f
union all
select case t.typtype when 'e' then 'enum' when 'd' then 'domain' when 'c' then 'composite type'
                      else 'range type' end,
       t.nspname || '.' || t.typname,
       case t.typtype
         when 'e' then (select string_agg(e.enumlabel, ', ' order by e.enumsortorder)
                          from pg_catalog.pg_enum e where e.enumtypid = t.oid)
         when 'd' then concat_ws(' ', pg_catalog.format_type(t.typbasetype, t.typtypmod),
                                 case when t.typnotnull then 'not null' end,
                                 'default ' || t.typdefault,
                                 (select string_agg(pg_catalog.pg_get_constraintdef(c.oid), ' '
                                                    order by c.conname)
                                    from pg_catalog.pg_constraint c where c.contypid = t.oid))
         when 'c' then (select string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod),
                                          ', ' order by a.attnum)
                          from pg_catalog.pg_attribute a
                         where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
         else (select pg_catalog.format_type(rg.rngsubtype, null)
                 from pg_catalog.pg_range rg where rg.rngtypid = t.oid)
       end,
       t.nspname, null
  from types t
union all
select 'comment', pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description,
       coalesce(r.nspname, f.nspname, ty.nspname, cr.nspname, tr.nspname, sn.nspname),
       coalesce(r.relname, cr.relname, tr.relname)
  from pg_catalog.pg_description d
  left join rels r on d.classoid = 'pg_catalog.pg_class'::regclass and r.oid = d.objoid
  left join funcs f on d.classoid = 'pg_catalog.pg_proc'::regclass and f.oid = d.objoid
  left join types ty on d.classoid = 'pg_catalog.pg_type'::regclass and ty.oid = d.objoid
  left join pg_catalog.pg_constraint con
         on d.classoid = 'pg_catalog.pg_constraint'::regclass and con.oid = d.objoid
  left join rels cr on cr.oid = con.conrelid
  left join pg_catalog.pg_trigger tg
         on d.classoid = 'pg_catalog.pg_trigger'::regclass and tg.oid = d.objoid
  left join rels tr on tr.oid = tg.tgrelid
  left join pg_catalog.pg_namespace sn
         on d.classoid = 'pg_catalog.pg_namespace'::regclass and sn.oid = d.objoid
         and sn.nspname !~ '^pg_' and sn.nspname <> 'information_schema'
 where coalesce(r.oid, f.oid, ty.oid, cr.oid, tr.oid, sn.oid) is not null
union all
select 'large objects', 'count', count(*)::text, null, null
  from pg_catalog.pg_largeobject_metadata
order by 1, 2`;
