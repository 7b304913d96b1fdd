/**
 * The compose scenario (compose.yaml) without Docker: scripts/inject.sh with the
 * same commands and environment variables, against the test clusters. pgferry
 * runs `clone --follow` with its coordinator behind the shared secret; the
 * injector shares no directory with it and steers it over TCP only.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freePort, freshDatabases, tempDir } from "./helpers/env.ts";
import { pgferry, spawnPgferry } from "./helpers/pgferry.ts";
import { assertSameData } from "./helpers/tables.ts";

const INJECT = fileURLToPath(new URL("../scripts/inject.sh", import.meta.url));
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

async function inject(step: string, env: Record<string, string>) {
  const out = await new Deno.Command("bash", {
    args: [INJECT, step],
    env: { ...env, PGFERRY_BIN: `${Deno.execPath()} run -A --quiet ${MAIN}`, INJECT_ROUNDS: "4" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

Deno.test("the compose scenario as plain scripts: inject.sh prepares, steers clone --follow over TCP with the secret, and finds the target equal", async () => {
  const name = "inject";
  const { source, target } = await freshDatabases(name);
  const dir = await tempDir(name);
  const secretFile = join(dir, "..", `${name}.secret`);
  await Deno.writeTextFile(secretFile, crypto.randomUUID());
  const env = { PGFERRY_SOURCE_PGURI: source, PGFERRY_TARGET_PGURI: target };
  const prepared = await inject("prepare", env);
  assertEquals(prepared.code, 0, prepared.stderr);

  const port = String(freePort());
  const follow = spawnPgferry(
    [
      "clone",
      "--follow",
      "--secret-file",
      secretFile,
      "--dir",
      dir,
      "--slot-name",
      name,
      "--origin",
      name,
    ],
    { ...env, PGFERRY_HOST: "127.0.0.1", PGFERRY_PORT: port },
  );
  try {
    const run = await inject("run", {
      ...env,
      PGFERRY_HOST: "127.0.0.1",
      PGFERRY_PORT: port,
      PGFERRY_SECRET_FILE: secretFile,
    });
    assertEquals(run.code, 0, `${run.stdout}\n${run.stderr}\n${follow.stderrSoFar}`);
    assertStringIncludes(run.stdout, "target equals source at endpos");
    const { code, stderr } = await follow.exit(120_000);
    assertEquals(code, 0, stderr);
  } finally {
    follow.kill("SIGKILL");
    await pgferry([
      "stream",
      "cleanup",
      "--source",
      source,
      "--target",
      target,
      "--slot-name",
      name,
      "--origin",
      name,
    ]);
  }
  await assertSameData(source, target, ["public"]);
});
