/**
 * follow from a source reached over TLS: scripts/test.sh starts a third cluster
 * with ssl = on and a throwaway CA, and pgferry connects to it with
 * sslmode=verify-ca and sslrootcert, so each of its connections is TLS and
 * checks the server (the replication stream, the COPY protocol ones and those
 * through postgres.js). The backlog has big and small transactions: over TLS
 * too, receive pauses between reads to let the walsender batch (replication.ts,
 * PACE_MS), and a rule that pauses too often stalls the stream (one did: no
 * progress in 40 s on a bulk backlog), so the run must end in time.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { freshDatabase, targetUri, tempDir, tlsSourceUri, verifyCa } from "./helpers/env.ts";
import { pgferry } from "./helpers/pgferry.ts";
import { cleanupStream, psql, sourceLsn, streamArgs } from "./helpers/pg.ts";
import { assertSameData } from "./helpers/tables.ts";

const SCHEMA = "create table t (id bigint primary key, n integer, s text)";

/** Each in its own psql call: the loop commits row by row. */
const LOAD = [
  "insert into t select g, g % 1000, md5(g::text) from generate_series(1, 50000) g",
  "insert into t select g, g % 1000, md5(g::text) from generate_series(50001, 100000) g",
  "do $$ begin for i in 100001..102000 loop insert into t values (i, i, 'tiny'); commit; end loop; end $$",
  "update t set n = n + 1, s = s || '!' where id % 3 = 0",
  "delete from t where id % 7 = 0",
];

for (const plugin of ["pgoutput", "test_decoding"] as const) {
  Deno.test(`follow from a source over TLS (verify-ca, sslrootcert) with ${plugin}: a backlog of big and small transactions arrives in time, the target equals the source`, async () => {
    const name = `tls_${plugin}`;
    const source = await freshDatabase(tlsSourceUri(), name);
    const target = await freshDatabase(targetUri(), name);
    await psql(source, SCHEMA);
    await psql(target, SCHEMA);
    const dir = await tempDir(name);
    const args = [...streamArgs(verifyCa(source), target, dir, name), "--plugin", plugin];
    try {
      const setup = await pgferry(["stream", "setup", ...args]);
      assertEquals(setup.code, 0, setup.stderr);
      assertEquals((await pgferry(["stream", "sentinel", "set", "apply", "--dir", dir])).code, 0);
      for (const statement of LOAD) await psql(source, statement);
      const endpos = await sourceLsn(source);
      const started = Date.now();
      const run = await pgferry(["follow", "--resume", ...args, "--endpos", endpos], {}, 120_000);
      const seconds = (Date.now() - started) / 1000;
      assertEquals(run.code, 0, run.stderr);
      assert(!run.stderr.includes("WARN"), run.stderr);
      assert(seconds < 60, `follow over TLS took ${seconds} s`);
      await assertSameData(source, target, ["public"]);
    } finally {
      await cleanupStream(verifyCa(source), target, name);
    }
  });
}
