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
];

/** The version a catalog has once every migration has run. */
export const SCHEMA_VERSION = MIGRATIONS.length;
