/**
 * Sequences: the source's `last_value` and `is_called`, set on the target with
 * `setval`. Sequences are not transactional, so this reads their current state,
 * not the snapshot's: run it after the rows are copied, as pgcopydb does.
 */
import { CopyConnection } from "../pg/copy_connection.ts";
import { quoteLiteral } from "../pg/quote.ts";
import { type Filters, noFilters, tableExcluded } from "./filters.ts";
import { type SourceSequence, sqlName } from "./inventory.ts";
import { COMPARED_SEQUENCES } from "./queries.ts";

const BATCH = 200;

/** A sequence's state on the source. */
export interface SequenceValue {
  sequence: SourceSequence;
  lastValue: string;
  isCalled: boolean;
}

/** Reads `last_value, is_called` of every sequence, a batch per query. */
export async function readSequences(
  source: CopyConnection,
  sequences: SourceSequence[],
): Promise<SequenceValue[]> {
  const values: SequenceValue[] = [];
  for (let i = 0; i < sequences.length; i += BATCH) {
    const batch = sequences.slice(i, i + BATCH);
    const result = await source.query(
      batch.map((s, j) => `select ${j}, last_value::text, is_called from ${sqlName(s)}`)
        .join(" union all "),
    );
    for (const [j, lastValue, isCalled] of result.rows) {
      values.push({
        sequence: batch[Number(j)]!,
        lastValue: lastValue!,
        isCalled: isCalled === "t",
      });
    }
  }
  return values;
}

/** Sets every sequence on the target, a batch per query. */
export async function writeSequences(
  target: CopyConnection,
  values: SequenceValue[],
): Promise<void> {
  for (let i = 0; i < values.length; i += BATCH) {
    const batch = values.slice(i, i + BATCH);
    await target.query(
      `select ${
        batch.map((v) =>
          `pg_catalog.setval(${
            quoteLiteral(sqlName(v.sequence))
          }::regclass, ${v.lastValue}, ${v.isCalled})`
        ).join(", ")
      }`,
    );
  }
}

/** Copies every sequence's state from source to target; returns how many. */
export async function copySequences(
  source: CopyConnection,
  target: CopyConnection,
  sequences: SourceSequence[],
): Promise<number> {
  const values = await readSequences(source, sequences);
  await writeSequences(target, values);
  return values.length;
}

/**
 * Sets every sequence of the target to the source's state, for the end of
 * `clone --follow` (logical decoding does not carry sequences). Sequences the
 * filters leave out, or owned by tables they leave out, are skipped.
 */
export async function syncSequences(
  source: string,
  target: string,
  filters: Filters = noFilters(),
): Promise<number> {
  await using src = await CopyConnection.connect(source, { role: "source" });
  await using tgt = await CopyConnection.connect(target, { role: "target" });
  const sequences: SourceSequence[] = [];
  for (const [schema, name, ownerSchema, ownerName] of (await src.query(COMPARED_SEQUENCES)).rows) {
    const sequence = { schema: schema!, name: name! };
    if (tableExcluded(filters, sequence)) continue;
    if (
      ownerSchema && ownerName && tableExcluded(filters, { schema: ownerSchema, name: ownerName })
    ) {
      continue;
    }
    sequences.push({ oid: 0, ...sequence });
  }
  return await copySequences(src, tgt, sequences);
}
