/**
 * Building an index of a copied table on the target, and the constraint it
 * backs: primary keys and unique constraints as `CREATE UNIQUE INDEX` then
 * `ALTER TABLE … ADD CONSTRAINT … USING INDEX` (the long build holds only a
 * SHARE lock; the ALTER is instant), exclusion constraints with their own
 * `ADD CONSTRAINT`. Each statement can be run again after a crash: the index
 * with IF NOT EXISTS, the constraint only when the target lacks it.
 * What pg_dump would add to the index (replica identity, CLUSTER, statistics
 * targets) follows, since its archive entry is skipped.
 */
import type { CopyConnection } from "../pg/copy_connection.ts";
import { quoteIdent, quoteLiteral } from "../pg/quote.ts";
import { type SourceIndex, sqlName } from "./inventory.ts";

/** What a clone_index row calls this index. */
export function indexKind(index: SourceIndex): "index" | "primary key" | "unique" | "exclusion" {
  switch (index.constraint?.type) {
    case "p":
      return "primary key";
    case "u":
      return "unique";
    case "x":
      return "exclusion";
    default:
      return "index";
  }
}

/** pg_get_indexdef with IF NOT EXISTS. */
export function createIndexSql(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX /, "CREATE $1INDEX IF NOT EXISTS ");
}

async function constraintExists(target: CopyConnection, index: SourceIndex): Promise<boolean> {
  const result = await target.query(
    `select 1 from pg_catalog.pg_constraint where conrelid = ${
      quoteLiteral(sqlName(index.table))
    }::regclass and conname = ${quoteLiteral(index.constraint!.name)}`,
  );
  return result.rows.length > 0;
}

/** Builds the index (unless `indexDone`) and its constraint (unless `constraintDone`). */
export async function buildIndex(
  target: CopyConnection,
  index: SourceIndex,
  progress: { indexDone: boolean; constraintDone: boolean },
  onIndexBuilt: () => Promise<void>,
): Promise<void> {
  const table = sqlName(index.table);
  const constraint = index.constraint;
  if (constraint?.type === "x") {
    if (!progress.indexDone && !(await constraintExists(target, index))) {
      await target.query(
        `alter table only ${table} add constraint ${
          quoteIdent(constraint.name)
        } ${constraint.definition}`,
      );
    }
  } else {
    if (!progress.indexDone) await target.query(createIndexSql(index.definition));
    await onIndexBuilt();
    if (constraint && !progress.constraintDone && !(await constraintExists(target, index))) {
      const what = constraint.type === "p" ? "primary key" : "unique";
      const deferrable = constraint.deferrable
        ? ` deferrable${constraint.deferred ? " initially deferred" : ""}`
        : "";
      await target.query(
        `alter table only ${table} add constraint ${
          quoteIdent(constraint.name)
        } ${what} using index ${quoteIdent(index.name)}${deferrable}`,
      );
    }
  }
  const extra: string[] = [];
  const indexName = sqlName(index);
  if (index.replicaIdentity) {
    extra.push(`alter table only ${table} replica identity using index ${quoteIdent(index.name)}`);
  }
  if (index.clustered) {
    extra.push(`alter table only ${table} cluster on ${quoteIdent(index.name)}`);
  }
  for (const [column, target] of index.statistics) {
    extra.push(`alter index ${indexName} alter column ${column} set statistics ${target}`);
  }
  if (extra.length > 0) await target.query(extra.join("; "));
}
