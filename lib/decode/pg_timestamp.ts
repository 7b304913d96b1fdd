/**
 * PostgreSQL `timestamptz` values as microseconds since 2000-01-01 00:00:00 UTC
 * (`PgTimestamp`), to and from the text the server prints in ISO DateStyle:
 *
 * ```
 * timestamp := YYYY-MM-DD " " HH:MI:SS [ "." 1-6 digits ] offset [ " BC" ]
 * offset    := ("+" | "-") HH [ ":" MI [ ":" SS ] ]
 * ```
 *
 * That is `timestamptz_to_str()`'s format, which test_decoding and wal2json use
 * for commit times whatever the session's DateStyle. Exact: bigint arithmetic,
 * no `Date`.
 */
import type { PgTimestamp } from "./change.ts";

/** `timestamptz` 'infinity' and '-infinity' as PostgreSQL stores them. */
export const PG_TIMESTAMP_INFINITY: PgTimestamp = 0x7FFF_FFFF_FFFF_FFFFn;
export const PG_TIMESTAMP_MINUS_INFINITY: PgTimestamp = -0x8000_0000_0000_0000n;

const USECS_PER_SEC = 1_000_000n;
const SECS_PER_DAY = 86_400n;

const TIMESTAMP_PATTERN =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d)(?::(\d\d))?)?)?( BC)?$/;

/** Days since 0000-03-01 of a proleptic Gregorian date (year 0 = 1 BC). */
function daysFromCivil(year: bigint, month: bigint, day: bigint): bigint {
  const y = month <= 2n ? year - 1n : year;
  const era = (y >= 0n ? y : y - 399n) / 400n;
  const yoe = y - era * 400n;
  const mp = (month + 9n) % 12n;
  const doy = (153n * mp + 2n) / 5n + day - 1n;
  const doe = yoe * 365n + yoe / 4n - yoe / 100n + doy;
  return era * 146_097n + doe;
}

function civilFromDays(days: bigint): [bigint, bigint, bigint] {
  const era = (days >= 0n ? days : days - 146_096n) / 146_097n;
  const doe = days - era * 146_097n;
  const yoe = (doe - doe / 1460n + doe / 36_524n - doe / 146_096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const day = doy - (153n * mp + 2n) / 5n + 1n;
  const month = mp < 10n ? mp + 3n : mp - 9n;
  const year = yoe + era * 400n + (month <= 2n ? 1n : 0n);
  return [year, month, day];
}

/** 2000-01-01, PostgreSQL's epoch, in `daysFromCivil` days. */
const PG_EPOCH_DAYS = daysFromCivil(2000n, 1n, 1n);

/**
 * Parses timestamptz text such as `"2024-01-02 03:04:05.123456+02"` or
 * `"infinity"`; a missing offset means UTC. Throws a `SyntaxError` that quotes
 * anything else.
 */
export function parsePgTimestamp(text: string): PgTimestamp {
  if (text === "infinity") return PG_TIMESTAMP_INFINITY;
  if (text === "-infinity") return PG_TIMESTAMP_MINUS_INFINITY;
  const m = TIMESTAMP_PATTERN.exec(text);
  if (m === null) {
    throw new SyntaxError(
      `Invalid timestamp "${text}": expected ISO format like "2024-01-02 03:04:05.123456+00"`,
    );
  }
  const [, y, mo, d, h, mi, s, frac, sign, oh, om, os, bc] = m;
  let year = BigInt(y!);
  if (bc !== undefined) year = 1n - year;
  const month = BigInt(mo!);
  const day = BigInt(d!);
  if (month < 1n || month > 12n || day < 1n || day > 31n) {
    throw new SyntaxError(`Invalid timestamp "${text}": no such date`);
  }
  const days = daysFromCivil(year, month, day) - PG_EPOCH_DAYS;
  let seconds = days * SECS_PER_DAY + BigInt(h!) * 3600n + BigInt(mi!) * 60n + BigInt(s!);
  if (sign !== undefined) {
    const offset = BigInt(oh!) * 3600n + BigInt(om ?? "0") * 60n + BigInt(os ?? "0");
    seconds -= sign === "+" ? offset : -offset;
  }
  const micros = frac === undefined ? 0n : BigInt(frac.padEnd(6, "0"));
  return seconds * USECS_PER_SEC + micros;
}

function pad(n: bigint, width: number): string {
  return n.toString().padStart(width, "0");
}

/**
 * Formats a PgTimestamp as UTC timestamptz text, the way PostgreSQL prints it
 * with DateStyle ISO and TimeZone UTC: `"2024-01-02 01:04:05.123456+00"`.
 */
export function formatPgTimestamp(ts: PgTimestamp): string {
  if (ts === PG_TIMESTAMP_INFINITY) return "infinity";
  if (ts === PG_TIMESTAMP_MINUS_INFINITY) return "-infinity";
  let seconds = ts / USECS_PER_SEC;
  let micros = ts % USECS_PER_SEC;
  if (micros < 0n) {
    micros += USECS_PER_SEC;
    seconds -= 1n;
  }
  let days = seconds / SECS_PER_DAY;
  let secOfDay = seconds % SECS_PER_DAY;
  if (secOfDay < 0n) {
    secOfDay += SECS_PER_DAY;
    days -= 1n;
  }
  const [year, month, day] = civilFromDays(days + PG_EPOCH_DAYS);
  const bc = year <= 0n;
  const time = `${pad(secOfDay / 3600n, 2)}:${pad((secOfDay / 60n) % 60n, 2)}:${
    pad(secOfDay % 60n, 2)
  }`;
  const fraction = micros === 0n ? "" : `.${pad(micros, 6).replace(/0+$/, "")}`;
  const date = `${pad(bc ? 1n - year : year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
  return `${date} ${time}${fraction}+00${bc ? " BC" : ""}`;
}
