/**
 * Settings the replication connection must carry (as startup parameters, e.g.
 * postgres.js `connection: { ...DECODING_SESSION_SETTINGS, replication:
 * "database" }`) so that the text the output plugins print is exact and can be
 * read back by the target. Output functions run inside the walsender, with its
 * session's settings; the server defaults are whatever the source's
 * postgresql.conf says.
 *
 * - `DateStyle=ISO`: dates and timestamps in an order no target can misread.
 * - `IntervalStyle=postgres`: the interval format every target reads.
 * - `extra_float_digits=3`: shortest exact float4/float8 output (PG 12+;
 *   0 would round to 15 digits).
 * - `bytea_output=hex`: wal2json strips the first two characters of bytea
 *   output assuming they are `\x`; the wal2json decoder puts them back.
 * - `TimeZone=UTC`: offsets in timestamptz values and commit times are then
 *   `+00` (any offset is parsed; this only makes them stable).
 * - `client_encoding=UTF8`: pgoutput converts text to it; test_decoding and
 *   wal2json write the database encoding regardless (a source database not
 *   in UTF8 must be decoded by the caller before the text decoders).
 *
 * `lc_monetary` shapes `money` output: apply must use the source's value.
 */
export const DECODING_SESSION_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  DateStyle: "ISO",
  IntervalStyle: "postgres",
  extra_float_digits: "3",
  bytea_output: "hex",
  TimeZone: "UTC",
  client_encoding: "UTF8",
});
