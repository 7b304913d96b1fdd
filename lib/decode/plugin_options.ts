/**
 * Output plugin options: what `START_REPLICATION SLOT … LOGICAL <lsn> (…)`
 * and `pg_logical_slot_get_changes(…, VARIADIC options)` pass to the plugin.
 * Each decoder exports the options it needs; receive sends them unchanged.
 */

/** Ordered `[name, value]` pairs. */
export type PluginOptions = readonly (readonly [string, string])[];

/**
 * The option list of START_REPLICATION, like pg_recvlogical writes it: names
 * as quoted identifiers (they contain hyphens), values as string literals.
 * Empty when there are no options.
 */
export function formatStartReplicationOptions(options: PluginOptions): string {
  if (options.length === 0) return "";
  const items = options.map(([name, value]) =>
    `"${name.replaceAll('"', '""')}" '${value.replaceAll("'", "''")}'`
  );
  return `(${items.join(", ")})`;
}

/** The options flattened for `pg_logical_slot_get_changes(slot, upto, n, VARIADIC text[])`. */
export function flattenPluginOptions(options: PluginOptions): string[] {
  return options.flatMap(([name, value]) => [name, value]);
}
