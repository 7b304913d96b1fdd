/**
 * Apply merges the changes of a group of source transactions by table and
 * key (lib/follow/net_changes.ts). Every way a row's changes can follow one
 * another, on real clusters, with each plugin: the target must equal the
 * source, and the target must have been written with fewer row updates than
 * the source made (so the merging really ran).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry } from "./helpers/pgferry.ts";
import { assertSameData, withSql } from "./helpers/tables.ts";
import { cleanupStream, psql, sourceLsn, streamArgs, waitFor } from "./helpers/pg.ts";

const SCHEMA = `
create table k1 (id integer primary key, v integer, t text);
create table k2 (a integer, b text, v text, primary key (a, b));
create table nokey (x integer, y text);
alter table nokey replica identity full;
create table uniq (id integer primary key, email text unique, n integer);
create table toasty (id integer primary key, big text, n integer);
alter table toasty alter column big set storage external;
create table ident (id integer generated always as identity primary key, v integer,
                    g integer generated always as (v * 2) stored);
create table trunc (id integer primary key, v integer);
create table conv (id integer primary key, t text, u text);
create table single (t text primary key);
create table arr (id integer primary key, a integer[], t text);
create table boxy (id integer primary key, b box, t text);
insert into boxy values (1, '(1,1),(0,0)', 'a'), (2, '(2,2),(0,0)', 'b');
insert into arr values (1, '{1,2}', 'x'), (2, null, 'y'), (3, '{}', 'z');
insert into k1 select g, g, 'row ' || g from generate_series(1, 100) g;
insert into uniq values (1, 'a@x', 0), (2, 'b@x', 0);
insert into k2 values (7, E'ü''s "\\\\ ✓', 'pre'), (8, E'ü''s "\\\\ ✓', 'pre');
insert into toasty select g, repeat(md5(g::text), 200), 0 from generate_series(1, 3) g;
`;

/** Each statement its own source transaction (psql autocommit), unless inside BEGIN … COMMIT. */
const DML = `
-- one row updated 200 times
${"update k1 set v = v + 1 where id = 1;\n".repeat(200)}
-- inserted, updated, deleted: nothing left
insert into k1 values (1000, 1, 'new');
update k1 set v = 2 where id = 1000;
delete from k1 where id = 1000;
-- deleted then inserted again; deleted, inserted, updated; updated then deleted
delete from k1 where id = 2;
insert into k1 values (2, -2, 'again');
delete from k1 where id = 3;
insert into k1 values (3, -3, 'again');
update k1 set t = 'again and updated' where id = 3;
update k1 set v = 44 where id = 4;
delete from k1 where id = 4;
insert into k1 values (1001, 1, 'first');
delete from k1 where id = 1001;
insert into k1 values (1001, 2, 'second');
-- NULL and the text 'null'
update k1 set t = null where id = 6;
update k1 set t = 'null' where id = 7;
update k1 set t = 'x' where id = 8;
update k1 set t = null where id = 8;
-- the key changes: not merged, applied in order
update k1 set v = 5 where id = 5;
update k1 set id = 5000 where id = 5;
update k1 set v = 5000 where id = 5000;
delete from k1 where id = 11;
update k1 set id = 11 where id = 12;
update k1 set t = 'moved' where id = 11;
-- a composite key with awkward text
insert into k2 values (1, E'it''s\\na \\\\ "key"', 'one');
update k2 set v = 'two' where a = 1;
insert into k2 values (2, 'b', 'x');
delete from k2 where a = 2;
insert into k2 values (2, 'b', 'y');
-- inserts go as COPY: its escapes, its NULL marker and end-of-data line as plain text
insert into k2 values (3, E'tab\there\rcr\nnl', '\\N'), (4, '\\.', E'\\\\.\n\\\\.\n'), (5, '', null);
-- no key: inserts merge, an UPDATE (REPLICA IDENTITY FULL) goes after them
insert into nokey values (1, 'a'), (1, 'a'), (2, 'b');
update nokey set y = 'c' where x = 2;
insert into nokey values (3, 'c');
delete from nokey where x = 1;
-- a second unique index: applied in source order (a swap that only works in that order)
update uniq set email = 'tmp' where id = 1;
update uniq set email = 'a@x' where id = 2;
update uniq set email = 'b@x' where id = 1;
-- unchanged TOAST: n changes, big is not sent, must stay
update toasty set n = n + 1 where id = 1;
update toasty set n = n + 1 where id = 1;
update toasty set big = 'small now', n = 10 where id = 2;
update toasty set n = 11 where id = 2;
update toasty set n = 1 where id = 3;
delete from toasty where id = 3;
-- identity (always) and generated columns
insert into ident (v) values (1), (2);
update ident set v = 20 where id = 2;
delete from ident where id = 1;
-- inserts held as COPY text, read back by key when another change follows: escapes, NULL,
-- the text \N, an empty line (one column, empty text) survive
insert into conv values (1, E'tab\there\\\\back\nnl\rcr', '\\N'), (2, '', null), (3, 'plain', '\\\\N');
update conv set u = 'set' where id = 2;
insert into conv values (4, 'after', 'x');
insert into single values (''), ('a');
delete from single where t = 'a';
-- updates and deletes pass their rows as arrays: quotes, backslashes, braces, the text NULL;
-- a table with an array column passes them as VALUES
update k1 set t = E'"{x}", \\\\ NULL' where id = 9;
update k1 set t = 'NULL' where id = 10;
-- text beyond ASCII, in values and in keys, with quotes and a backslash next to it
update k1 set t = E'ünï ✓ ''q'' \\\\ "x"' where id = 13;
update k2 set v = E'naïve ''v''' where a = 8;
delete from k2 where a = 7;
update arr set a = '{{1,2},{3,4}}', t = E'q"uo\\\\te {a,b}' where id = 1;
update arr set t = 'NULL', a = '{NULL}' where id = 2;
delete from arr where id = 3;
-- box separates array elements with ';', not ',': its table passes rows as VALUES too
update boxy set b = '(3,3),(1,1)' where id = 1;
update boxy set t = 'c' where id = 2;
-- TRUNCATE between changes of the same table
insert into trunc values (1, 1), (2, 2);
update trunc set v = 3 where id = 1;
truncate trunc;
insert into trunc values (1, 10);
update trunc set v = 11 where id = 1;
-- one transaction with several rows and all of it
begin;
insert into k1 select g, g, 'bulk' from generate_series(2000, 2999) g;
update k1 set v = -v where id between 2000 and 2499;
delete from k1 where id between 2900 and 2999;
commit;
`;

for (const plugin of ["pgoutput", "test_decoding", "wal2json"] as const) {
  Deno.test(`apply merges a backlog's changes by table and key with ${plugin}: the target equals the source`, async () => {
    const name = `net_changes_${plugin}`;
    const { source, target } = await freshDatabases(name);
    await psql(source, { sql: SCHEMA });
    await psql(target, { sql: SCHEMA });
    const dir = await tempDir(name);
    const args = [...streamArgs(source, target, dir, name), "--plugin", plugin];
    try {
      const setup = await pgferry(["stream", "setup", ...args]);
      assertEquals(setup.code, 0, setup.stderr);
      // stream setup leaves apply off, as pgcopydb does.
      assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
      await psql(source, { sql: DML });
      const endpos = await sourceLsn(source);
      // Receive everything first: apply then sees the whole backlog at once.
      const receive = await pgferry(["stream", "receive", ...args, "--resume", "--endpos", endpos]);
      assertEquals(receive.code, 0, receive.stderr);
      const apply = await pgferry(["stream", "apply", ...args, "--resume", "--endpos", endpos]);
      assertEquals(apply.code, 0, apply.stderr);
    } finally {
      await cleanupStream(source, target, name);
    }
    await assertSameData(source, target, ["public"]);
    // The 200 updates of k1 row 1 (and the rest) reached the target as a handful. The apply
    // session's statistics arrive when it ends: wait for its inserts to show first.
    let counts = { ins: 0, upd: 0 };
    await waitFor("the apply session's statistics", async () => {
      counts = await withSql(target, async (sql) => {
        const [row] = await sql`select n_tup_ins::int as ins, n_tup_upd::int as upd
                                  from pg_stat_user_tables where relname = 'k1'`;
        return { ins: row!["ins"] as number, upd: row!["upd"] as number };
      });
      return counts.ins >= 1000; // the rows of the one big transaction
    });
    assert(
      counts.upd < 50,
      `the target made ${counts.upd} row updates in k1 for 200+ on the source`,
    );
  });
}
