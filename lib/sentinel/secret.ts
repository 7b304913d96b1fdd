/** The shared secret of the coordinator and its clients: PGFERRY_SECRET or a secret file. */
import { OperatorError } from "../errors.ts";

/**
 * Reads the secret from `secretFile` when given, else from PGFERRY_SECRET.
 * A file's trailing newline is not part of the secret. Undefined when neither is set.
 */
export async function loadSecret(secretFile: string | undefined): Promise<Uint8Array | undefined> {
  let text: string | undefined;
  if (secretFile !== undefined) {
    try {
      text = (await Deno.readTextFile(secretFile)).replace(/\r?\n$/, "");
    } catch (err) {
      throw new OperatorError(`Cannot read the secret file "${secretFile}": ${String(err)}`, {
        cause: err,
      });
    }
    if (text === "") throw new OperatorError(`The secret file "${secretFile}" is empty`);
  } else {
    text = Deno.env.get("PGFERRY_SECRET") || undefined;
  }
  return text === undefined ? undefined : new TextEncoder().encode(text);
}
