/**
 * The catalog's schema as forward migrations: migration N brings the catalog
 * from version N to N + 1. Never edit a migration that has shipped; add one.
 */
export const MIGRATIONS: readonly string[] = [
  `
  create table sentinel (
    id integer primary key check (id = 1),
    startpos text not null default '0/0',
    endpos text not null default '0/0',
    apply integer not null default 0,
    write_lsn text not null default '0/0',
    flush_lsn text not null default '0/0',
    replay_lsn text not null default '0/0'
  );
  create table setup (
    id integer primary key check (id = 1),
    source_pguri text,
    target_pguri text,
    snapshot text,
    plugin text,
    slot_name text,
    origin text,
    publication text,
    consistent_point text,
    filters text
  );
  create table command_log (
    id integer primary key,
    at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    command text not null,
    detail text
  );
  `,
  // Clone progress: what `--resume` skips and `list progress` shows. Rows are
  // planned when a clone starts; a step, part or index is done once done_at is set.
  `
  create table clone_step (
    name text primary key,
    started_at text,
    done_at text,
    duration_ms integer,
    detail text
  );
  create table clone_table (
    oid integer primary key,
    nspname text not null,
    relname text not null,
    bytes integer not null,
    reltuples integer not null,
    parts integer not null,
    split_key text,
    copy_format text not null,
    copy_data integer not null default 1,
    truncated integer not null default 0,
    indexes_done_at text,
    index_ms integer,
    vacuum_done_at text,
    vacuum_ms integer
  );
  create table clone_table_part (
    table_oid integer not null,
    part integer not null,
    parts integer not null,
    where_clause text,
    started_at text,
    done_at text,
    rows integer,
    bytes integer,
    duration_ms integer,
    pid integer,
    primary key (table_oid, part)
  );
  create table clone_index (
    oid integer primary key,
    table_oid integer not null,
    nspname text not null,
    relname text not null,
    constraint_name text,
    kind text not null,
    started_at text,
    done_at text,
    duration_ms integer,
    constraint_done_at text,
    pid integer
  );
  `,
];

/** The version a catalog has once every migration has run. */
export const SCHEMA_VERSION = MIGRATIONS.length;
