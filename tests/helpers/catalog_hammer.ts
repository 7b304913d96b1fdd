/**
 * A separate process that hammers the catalog, for the concurrency test.
 *   increment DIR N   N read-modify-write increments of test_counter under the write lock
 *   read DIR STOPFILE read the sentinel in a loop until STOPFILE exists; print the count
 * Any error is printed and exits 1.
 */
import { Catalog } from "../../lib/catalog/catalog.ts";
import { readSentinel } from "../../lib/catalog/sentinel_store.ts";

const [mode, dir, arg] = Deno.args;
using catalog = await Catalog.open(dir!);
if (mode === "increment") {
  for (let i = 0; i < Number(arg); i++) {
    await catalog.write((db) => {
      const row = db.prepare("select n from test_counter").get() as { n: number };
      db.prepare("update test_counter set n = ?").run(row.n + 1);
    });
  }
} else {
  let reads = 0;
  for (;;) {
    readSentinel(catalog.db);
    reads++;
    try {
      await Deno.stat(arg!);
      break;
    } catch {
      // not yet
    }
  }
  console.log(reads);
}
