/**
 * Connection strings as operators give them: URIs (`postgres://u:pw@h:5432/db`)
 * or keyword/value strings (`host=h password=pw`). Passwords never leave this
 * process in logs, errors or the catalog: `maskPassword` is applied at every edge.
 */

// The password ends at the last "@" (an unencoded "@" may be part of it): over-masking is safe.
const URI_PASSWORD = /^(postgres(?:ql)?:\/\/[^:@/?#]*:)(.*)(@)(?=[^@]*$)/i;
const KEYWORD_PASSWORD = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi;
const QUERY_PASSWORD = /([?&]password=)([^&#]*)/gi;

/** The connection string with any password replaced by `****`. */
export function maskPassword(pguri: string): string {
  return pguri
    .replace(URI_PASSWORD, "$1****$3")
    .replace(KEYWORD_PASSWORD, "$1****")
    .replace(QUERY_PASSWORD, "$1****");
}

/** The connection string with any password removed, for the catalog. */
export function stripPassword(pguri: string): string {
  return pguri
    .replace(URI_PASSWORD, (_m, user: string, _pw: string, at: string) => user.slice(0, -1) + at)
    .replace(KEYWORD_PASSWORD, "")
    .replace(QUERY_PASSWORD, "")
    .replace(/\?&/, "?")
    .replace(/\?$/, "")
    .replace(/\s{2,}/g, " ")
    .trim();
}

/** Masks every connection string that appears inside a longer text (an error message). */
export function maskPasswordsIn(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:@/?#\s]*:)\S*@(?=[^@\s]*(\s|$))/gi, "$1****@")
    .replace(KEYWORD_PASSWORD, "$1****")
    .replace(QUERY_PASSWORD, "$1****");
}
