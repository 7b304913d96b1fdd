/** SQL identifiers and literals, quoted the way PostgreSQL's quote_ident / quote_literal do. */

/** `"name"`, doubling embedded quotes. Always quoted: safe for any name. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `"schema"."table"`. */
export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** `'text'`, doubling embedded quotes (standard_conforming_strings on). */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** A value as an untyped literal, or `null`. */
export function literal(value: string | null): string {
  return value === null ? "null" : quoteLiteral(value);
}
