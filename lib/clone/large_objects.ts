/**
 * Large objects: the schema restore creates them (pg_dump's BLOB entries, with
 * owner, ACL and comment); their contents are copied here in chunks with
 * `lo_get` inside the snapshot and `lo_put` on the target, one transaction per
 * object, so that a retried object starts from an empty one.
 */
import type { CopyConnection } from "../pg/copy_connection.ts";

const CHUNK = 1024 * 1024;
const INV_WRITE = 0x20000;

/** Copies the contents of one large object; returns its size in bytes. */
export async function copyLargeObject(
  source: CopyConnection,
  target: CopyConnection,
  oid: number,
): Promise<number> {
  await target.query(
    `begin;
     select pg_catalog.lo_create(${oid})
      where not exists (select 1 from pg_catalog.pg_largeobject_metadata where oid = ${oid});
     select pg_catalog.lo_truncate(pg_catalog.lo_open(${oid}, ${INV_WRITE}), 0)`,
  );
  let offset = 0;
  for (;;) {
    const result = await source.query(`select pg_catalog.lo_get(${oid}, ${offset}, ${CHUNK})`);
    const hex = result.rows[0]?.[0] ?? "\\x";
    const length = (hex.length - 2) / 2;
    if (length > 0) {
      await target.query(`select pg_catalog.lo_put(${oid}, ${offset}, '${hex}'::bytea)`);
      offset += length;
    }
    if (length < CHUNK) break;
  }
  await target.query("commit");
  return offset;
}
