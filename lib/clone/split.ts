/**
 * Same-table concurrency: a table above `--split-tables-larger-than` is copied
 * in parts, each a WHERE clause over an integer key range (`id >= a and id < b`)
 * or, without such a key, a CTID range (`ctid >= '(p,0)'::tid`; TID range
 * scans make these cheap from PostgreSQL 14 on). The first and last parts are
 * open-ended, so rows outside the range seen when planning are still copied.
 */
import { quoteIdent } from "../pg/quote.ts";
import type { CopyConnection } from "../pg/copy_connection.ts";
import type { SourceTable } from "./inventory.ts";
import { sqlName } from "./inventory.ts";

const BLOCK_SIZE = 8192;

/** How a table is divided: one WHERE clause per part (null: the whole table). */
export interface PartPlan {
  part: number;
  where: string | null;
}

export interface SplitOptions {
  /** Tables larger than this many bytes are split; 0 never splits. */
  largerThan: number;
  /** At most this many parts per table. */
  maxParts: number;
}

/** How many parts a table of this size gets. */
export function partCount(bytes: number, options: SplitOptions): number {
  if (options.largerThan <= 0 || bytes <= options.largerThan) return 1;
  return Math.max(1, Math.min(options.maxParts, Math.ceil(bytes / options.largerThan)));
}

/** Integer key ranges covering [min, max] in `count` parts, the outer ones open-ended. */
export function keyRanges(key: string, min: bigint, max: bigint, count: number): string[] {
  const span = max - min + 1n;
  const n = BigInt(Math.max(1, Math.min(count, Number(span < 1n ? 1n : span))));
  if (n <= 1n) return [];
  const step = (span + n - 1n) / n;
  const column = quoteIdent(key);
  const clauses: string[] = [];
  for (let i = 0n; i < n; i++) {
    const lower = min + i * step;
    const upper = lower + step;
    if (i === 0n) clauses.push(`${column} < ${upper}`);
    else if (i === n - 1n) clauses.push(`${column} >= ${lower}`);
    else clauses.push(`${column} >= ${lower} and ${column} < ${upper}`);
  }
  return clauses;
}

/** CTID ranges covering `pages` heap pages in `count` parts, the outer ones open-ended. */
export function ctidRanges(pages: number, count: number): string[] {
  const n = Math.max(1, Math.min(count, pages));
  if (n <= 1) return [];
  const step = Math.ceil(pages / n);
  const clauses: string[] = [];
  for (let i = 0; i < n; i++) {
    const lower = i * step;
    const upper = lower + step;
    if (i === 0) clauses.push(`ctid < '(${upper},0)'::tid`);
    else if (i === n - 1) clauses.push(`ctid >= '(${lower},0)'::tid`);
    else clauses.push(`ctid >= '(${lower},0)'::tid and ctid < '(${upper},0)'::tid`);
  }
  return clauses;
}

/**
 * The parts of a table. `source` is a connection inside the clone's snapshot,
 * used to read the key's range.
 */
export async function planParts(
  source: CopyConnection,
  table: SourceTable,
  options: SplitOptions,
): Promise<PartPlan[]> {
  const whole = [{ part: 0, where: null }];
  if (!table.copyData) return whole;
  const count = partCount(table.bytes, options);
  if (count <= 1) return whole;
  let clauses: string[];
  if (table.splitKey !== null) {
    const key = quoteIdent(table.splitKey);
    const result = await source.query(
      `select min(${key})::text, max(${key})::text from only ${sqlName(table)}`,
    );
    const [min, max] = result.rows[0] ?? [];
    if (min === null || max === null || min === undefined || max === undefined) return whole;
    clauses = keyRanges(table.splitKey, BigInt(min), BigInt(max), count);
  } else {
    clauses = ctidRanges(Math.ceil(table.mainBytes / BLOCK_SIZE), count);
  }
  if (clauses.length <= 1) return whole;
  return clauses.map((where, part) => ({ part, where }));
}
