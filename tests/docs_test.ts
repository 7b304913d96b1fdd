import { COMMANDS_DOC, formatMarkdown, renderCommands } from "../scripts/gen_docs.ts";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";

const REGENERATE =
  "run `deno run -A scripts/gen_docs.ts` (or `deno task docs`) and commit the result";

Deno.test("docs/commands.md is what the command table generates", async () => {
  const onDisk = await Deno.readTextFile(new URL(`../${COMMANDS_DOC}`, import.meta.url));
  const generated = await formatMarkdown(renderCommands());
  assertEquals(onDisk, generated, `${COMMANDS_DOC} differs from the command table: ${REGENERATE}`);
});

Deno.test("the command reference has every command, its help and its environment twins", () => {
  const doc = renderCommands();
  assertStringIncludes(doc, "## pgferry stream sentinel set endpos");
  assertStringIncludes(doc, "usage: pgferry stream sentinel set endpos (LSN | --current)");
  assertStringIncludes(doc, "`PGFERRY_SOURCE_PGURI`, `PGCOPYDB_SOURCE_PGURI` (`--source`)");
  // A default computed at run time is described, not the value on the generating machine.
  assertStringIncludes(doc, "default $TMPDIR/pgferry, else /tmp/pgferry");
  assert(!doc.includes("default /tmp/pgferry)"), "the --dir default leaked the local value");
});
