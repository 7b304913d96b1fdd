/**
 * When an UPDATE's old key equals the new row's key, the old key says nothing
 * apply needs. pgoutput and test_decoding send it anyway when the key holds an
 * external TOAST value, and wal2json always repeats the key of the new row;
 * the decoders drop it so that `Update.old` means the same for every plugin:
 * "the key changed" (kind `"key"`) or "the table is REPLICA IDENTITY FULL"
 * (kind `"row"`).
 */
import type { OldTuple, Tuple } from "./change.ts";

/** True when every old key value equals the new row's value of that column. */
export function oldKeyRepeatsNew(old: OldTuple, next: Tuple): boolean {
  if (old.kind !== "key") return false;
  const { columns, values } = next;
  for (let i = 0; i < old.columns.length; i++) {
    const name = old.columns[i]!.name;
    let j = 0;
    while (j < columns.length && columns[j]!.name !== name) j++;
    if (j === columns.length) return false;
    const value = values[j];
    if (typeof value === "object" && value !== null) return false;
    if (value !== old.values[i]) return false;
  }
  return true;
}
