/**
 * `compare schema`: the source's and the target's objects side by side, one
 * by one — schemas, extensions, tables and their columns, constraints,
 * indexes, triggers, rules, policies, views, sequences, functions, types,
 * comments, and the number of large objects — each named the same on any
 * server and defined as PostgreSQL prints it (with `search_path = ''`, so
 * every name is qualified). Owners and privileges are not compared.
 */
import { CopyConnection } from "../pg/copy_connection.ts";
import {
  type Filters,
  indexExcluded,
  noFilters,
  type QualifiedName,
  schemaExcluded,
  tableExcluded,
} from "./filters.ts";
import { RELATIONS, SCHEMA_OBJECTS } from "./queries.ts";

/** One object that differs. */
export interface SchemaDifference {
  kind: string;
  name: string;
  /** "missing" on the target, "extra" on the target, or "different" definitions. */
  change: "missing" | "extra" | "different";
  source: string | null;
  target: string | null;
}

/** What `compareSchema` found. */
export interface SchemaComparison {
  /** Objects compared (present on either side and not filtered out). */
  objects: number;
  differences: SchemaDifference[];
  equal: boolean;
}

interface SchemaObject {
  kind: string;
  name: string;
  definition: string;
  schema: string | null;
  relation: string | null;
}

async function readObjects(
  pguri: string,
  role: string,
): Promise<{
  objects: SchemaObject[];
  ancestors: Map<string, QualifiedName[]>;
  owners: Map<string, QualifiedName>;
}> {
  await using connection = await CopyConnection.connect(pguri, {
    role,
    parameters: { application_name: "pgferry compare" },
  });
  await connection.query("set search_path = ''");
  const objects = (await connection.query(SCHEMA_OBJECTS)).rows.map((
    [kind, name, definition, schema, relation],
  ) => ({
    kind: kind!,
    name: name!,
    definition: definition ?? "",
    schema: schema ?? null,
    relation: relation ?? null,
  }));
  const ancestors = new Map<string, QualifiedName[]>();
  const owners = new Map<string, QualifiedName>();
  const relations = (await connection.query(RELATIONS)).rows;
  const byOid = new Map(relations.map((row) => [row[0], { schema: row[1]!, name: row[2]! }]));
  for (const [, schema, name, , ancestorsJson, ownerOid] of relations) {
    const list = JSON.parse(ancestorsJson!) as [string, string][];
    if (list.length > 0) {
      ancestors.set(`${schema}.${name}`, list.map(([s, n]) => ({ schema: s, name: n })));
    }
    const owner = ownerOid === null ? undefined : byOid.get(ownerOid);
    if (owner !== undefined) owners.set(`${schema}.${name}`, owner);
  }
  return { objects, ancestors, owners };
}

/** Compares the schemas of `source` and `target`, leaving out what `filters` exclude. */
export async function compareSchema(
  source: string,
  target: string,
  options: { filters?: Filters } = {},
): Promise<SchemaComparison> {
  const filters = options.filters ?? noFilters();
  const [src, tgt] = await Promise.all([
    readObjects(source, "source"),
    readObjects(target, "target"),
  ]);
  const excluded = (table: QualifiedName) =>
    tableExcluded(filters, table, src.ancestors.get(`${table.schema}.${table.name}`) ?? []);
  const kept = (object: SchemaObject) => {
    const schema = object.schema;
    if (schema !== null && schemaExcluded(filters, schema)) return false;
    if (schema === null || object.relation === null) return true;
    const relation = { schema, name: object.relation };
    if (excluded(relation)) return false;
    const owner = src.owners.get(`${schema}.${object.relation}`);
    if (owner !== undefined && excluded(owner)) return false;
    if (object.kind === "index") {
      return !indexExcluded(filters, { schema, name: object.name.slice(schema.length + 1) });
    }
    if (object.kind === "constraint") {
      const name = object.name.slice(`${schema}.${object.relation}.`.length);
      return !indexExcluded(filters, { schema, name });
    }
    return true;
  };
  const key = (o: SchemaObject) => `${o.kind}\u0000${o.name}`;
  const sourceMap = new Map(src.objects.filter(kept).map((o) => [key(o), o]));
  const targetMap = new Map(tgt.objects.filter(kept).map((o) => [key(o), o]));
  const differences: SchemaDifference[] = [];
  for (const [k, o] of sourceMap) {
    const t = targetMap.get(k);
    if (t === undefined) {
      differences.push({
        kind: o.kind,
        name: o.name,
        change: "missing",
        source: o.definition,
        target: null,
      });
    } else if (t.definition !== o.definition) {
      differences.push({
        kind: o.kind,
        name: o.name,
        change: "different",
        source: o.definition,
        target: t.definition,
      });
    }
  }
  for (const [k, t] of targetMap) {
    if (!sourceMap.has(k)) {
      differences.push({
        kind: t.kind,
        name: t.name,
        change: "extra",
        source: null,
        target: t.definition,
      });
    }
  }
  const objects = new Set([...sourceMap.keys(), ...targetMap.keys()]).size;
  return { objects, differences, equal: differences.length === 0 };
}
