/**
 * A source database with the cases a clone gets wrong: partitioned and
 * inherited tables, identity and generated columns, domains, enums, composite
 * types, arrays, json/jsonb, bytea, large text, hstore and citext, foreign
 * keys (one deferrable), check and exclusion constraints, partial and
 * expression indexes, views and materialized views, functions and triggers,
 * owned and free sequences, comments, large objects, an empty table and a
 * table without columns. `rows` scales the bigger tables.
 */
import postgres from "postgres";

export const RICH_SCHEMA = `
create extension hstore;
create extension citext;
create schema app;
create schema "Odd Schema";
comment on schema app is 'the application';

create type app.mood as enum ('sad', 'ok', 'happy');
create domain app.positive_int as integer check (value > 0);
create type app.address as (street text, zip varchar(10));
create sequence app.free_seq start 100 increment 5;

create function app.touch() returns trigger language plpgsql as $$
begin
  insert into app.audit (tbl, op) values (tg_table_name, tg_op);
  return new;
end $$;
comment on function app.touch() is 'audit trigger';

create table app.audit (id bigserial primary key, tbl text not null, op text not null,
                        at timestamptz not null default now());

create table app.customers (
  id bigint generated always as identity primary key,
  email citext not null unique,
  name text not null,
  mood app.mood default 'ok',
  tags text[],
  attrs hstore,
  address app.address,
  moods app.mood[],
  profile jsonb,
  raw json,
  photo bytea,
  bio text,
  score app.positive_int,
  balance numeric(14,4) not null default 0 check (balance >= 0),
  ratio double precision,
  created timestamptz default '2024-01-01 00:00:00+00',
  name_upper text generated always as (upper(name)) stored
);
comment on table app.customers is 'Customers, with a ''quote''';
comment on column app.customers.email is 'unique, case-insensitive';

create table app.orders (
  id serial primary key,
  customer_id bigint not null references app.customers (id) deferrable initially deferred,
  amount numeric not null check (amount > 0),
  status text not null default 'new',
  placed_at date not null,
  note text,
  constraint orders_note_key unique (note) deferrable
);
create index orders_open_idx on app.orders (customer_id) where status <> 'done';
create index orders_lower_note_idx on app.orders (lower(note));
create trigger orders_audit after insert on app.orders for each row execute function app.touch();

create table app.events (id bigint not null, at timestamptz not null, kind text, payload jsonb,
                         primary key (id, at)) partition by range (at);
create table app.events_2024 partition of app.events
  for values from ('2024-01-01') to ('2025-01-01');
create table app.events_2025 partition of app.events
  for values from ('2025-01-01') to ('2026-01-01');
create table app.events_other partition of app.events default;
create index events_kind_idx on app.events (kind);

create table app.vehicles (id int primary key, wheels int not null);
create table app.cars (doors int) inherits (app.vehicles);

create table app.bookings (id int primary key, room int not null, during tsrange not null,
                           exclude using gist (during with &&));

create table app.big (id int primary key, payload text not null, n numeric);
create table app.big_nokey (n int, t text);

create table app.empty_table (id int primary key, v text);
create table app.no_columns ();
create unlogged table app.cache (k text primary key, v text);

create table "Odd Schema"."Mixed Case" ("Id" int primary key, "Value With Space" text,
                                        "quote""d" text);

create view app.customer_orders as
  select c.id, c.name, count(o.id) as orders
    from app.customers c left join app.orders o on o.customer_id = c.id
   group by c.id, c.name;
create materialized view app.order_totals as
  select customer_id, sum(amount) as total from app.orders group by customer_id;
create unique index order_totals_customer_idx on app.order_totals (customer_id);
`;

/** Fills the tables; `rows` rows in the big ones. */
export function richData(rows: number): string {
  return `
insert into app.customers (email, name, mood, tags, attrs, address, moods, profile, raw, photo,
                           bio, score, balance, ratio)
select 'User' || i || '@Example.com', 'name ' || i,
       (array['sad', 'ok', 'happy'])[1 + i % 3]::app.mood,
       array['a', 'b "quoted"', null, E'back\\\\slash'],
       ('k' || i || ' => v, "with space" => "x y"')::hstore,
       row(i || E' Main St\\nApt 2', lpad(i::text, 5, '0'))::app.address,
       array['ok', 'happy']::app.mood[],
       jsonb_build_object('i', i, 'nested', jsonb_build_object('arr', jsonb_build_array(1, 'two', null))),
       ('{"b": 1,  "a": [1, 2], "text": "null"}')::json,
       decode(lpad(to_hex(i), 8, '0') || '00ff00', 'hex'),
       case when i % 100 = 0 then repeat('large text ', 30000)
            when i % 7 = 0 then null
            when i % 11 = 0 then 'null'
            else E'tab\\tnewline\\nquote'' backslash\\\\ é ✓' end,
       1 + i % 50,
       (i * 12.3456)::numeric(14,4),
       case i % 4 when 0 then 0.1::float8 when 1 then 1e308 when 2 then 'NaN'::float8 else -0.000001234 end
  from generate_series(1, 500) i;

insert into app.orders (customer_id, amount, status, placed_at, note)
select 1 + i % 500, (i % 97) + 0.5, case when i % 3 = 0 then 'done' else 'new' end,
       date '2024-01-01' + (i % 400), case when i % 5 = 0 then null else 'note ' || i end
  from generate_series(1, 3000) i;

insert into app.events (id, at, kind, payload)
select i, timestamptz '2024-01-01 00:00:00+00' + (i % 1000) * interval '1 day',
       'kind' || (i % 7), jsonb_build_object('i', i)
  from generate_series(1, 3000) i;

insert into app.vehicles values (1, 2), (2, 4);
insert into app.cars values (10, 4, 5), (11, 4, 3);

insert into app.bookings
select i, i % 10, tsrange(timestamp '2024-01-01' + i * interval '1 hour',
                          timestamp '2024-01-01' + (i + 1) * interval '1 hour')
  from generate_series(1, 200) i;

insert into app.big select i, md5(i::text) || repeat('x', 50), i / 7.0
  from generate_series(1, ${rows}) i;
insert into app.big_nokey select i, md5(i::text) from generate_series(1, ${rows}) i;

insert into app.no_columns default values;
insert into app.no_columns default values;
insert into app.no_columns default values;
insert into app.cache select 'k' || i, 'v' || i from generate_series(1, 50) i;

insert into "Odd Schema"."Mixed Case" values (1, 'one', 'q"1'), (2, null, null);

select setval('app.free_seq', 1000);
select nextval('app.free_seq');

select lo_from_bytea(424242, 'hello large object');
select lo_from_bytea(424243, decode(repeat('00ff10', 1000000), 'hex'));
comment on large object 424242 is 'a small one';

refresh materialized view app.order_totals;
analyze;
`;
}

/** Creates the rich schema and its data in the database at `uri`. */
export async function makeRichSource(uri: string, rows = 20_000): Promise<void> {
  const sql = postgres(uri, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(RICH_SCHEMA);
    await sql.unsafe(richData(rows));
  } finally {
    await sql.end();
  }
}
