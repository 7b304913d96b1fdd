/**
 * Compares the data of tables on two databases: per table, the row count and
 * an md5 of every row's text in a stable order. Works for tables with or
 * without keys; equal text means equal values (both sides print with the same
 * output functions).
 */
import postgres from "postgres";
import { assertEquals } from "./assert.ts";

type Sql = ReturnType<typeof postgres>;

/** Runs `fn` with a short-lived connection. */
export async function withSql<T>(uri: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = postgres(uri, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

/** The ordinary tables (partitions included, partitioned parents not) of these schemas. */
async function tablesOf(sql: Sql, schemas: string[]): Promise<string[]> {
  const rows = await sql`
    select format('%I.%I', n.nspname, c.relname) as name
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind = 'r' and n.nspname = any(${schemas})
     order by 1`;
  return rows.map((r) => r["name"] as string);
}

/** `table → "count:md5"` for every table of the schemas. */
export async function tableDigests(
  uri: string,
  schemas: string[],
): Promise<Record<string, string>> {
  return await withSql(uri, async (sql) => {
    const out: Record<string, string> = {};
    for (const table of await tablesOf(sql, schemas)) {
      const [row] = await sql.unsafe(
        `select count(*)::text as n, md5(coalesce(string_agg(x::text, E'\\n' order by x::text), '')) as h from ${table} x`,
      );
      out[table] = `${row!["n"]}:${row!["h"]}`;
    }
    return out;
  });
}

/** Asserts that every table of the schemas holds the same rows on both sides. */
export async function assertSameData(
  source: string,
  target: string,
  schemas: string[],
  except: string[] = [],
): Promise<void> {
  const [a, b] = await Promise.all([tableDigests(source, schemas), tableDigests(target, schemas)]);
  for (const name of except) {
    delete a[name];
    delete b[name];
  }
  assertEquals(b, a, "target tables differ from the source");
}
