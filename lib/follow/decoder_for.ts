/** The decoder and plugin options of each output plugin. */
import type { ChangeDecoder, RelationLookup } from "../decode/change.ts";
import { PgoutputDecoder, pgoutputOptions } from "../decode/pgoutput.ts";
import type { PluginOptions } from "../decode/plugin_options.ts";
import { TEST_DECODING_OPTIONS, TestDecodingDecoder } from "../decode/test_decoding.ts";
import { WAL2JSON_OPTIONS, Wal2jsonDecoder } from "../decode/wal2json.ts";

/** The output plugins pgferry decodes. */
export const PLUGINS = ["pgoutput", "test_decoding", "wal2json"] as const;
export type Plugin = (typeof PLUGINS)[number];

/** Whether the text decoders need the source's key columns from the catalog. */
export function needsRelations(plugin: Plugin): boolean {
  return plugin !== "pgoutput";
}

/** A fresh decoder for one replication stream, and the options to start it with. */
export function decoderFor(
  plugin: Plugin,
  publication: string,
  lookup: RelationLookup | undefined,
): { decoder: ChangeDecoder; options: PluginOptions } {
  switch (plugin) {
    case "pgoutput":
      // Receive writes each change to the spool at once: its values can stay bytes.
      return {
        decoder: new PgoutputDecoder({ raw: true }),
        options: pgoutputOptions([publication]),
      };
    case "test_decoding":
      return { decoder: new TestDecodingDecoder(lookup), options: TEST_DECODING_OPTIONS };
    case "wal2json":
      return { decoder: new Wal2jsonDecoder(lookup), options: WAL2JSON_OPTIONS };
  }
}
