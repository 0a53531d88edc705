// The arguments `mig mcp parity` calls each tool with: the args file's entry for the tool, else its input schema's
// `examples`, else a value built from the schema (defaults, then the simplest valid value of each required
// property), checked against the schema; a tool that none of these gives valid arguments is skipped.
import { readFileSync } from "node:fs";
import type { Tool } from "@modelcontextprotocol/client";
import { Ajv2020 } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { parse as parseYaml } from "yaml";

/** One tool's entry in the args file. */
export interface ToolEntry {
  arguments?: Record<string, unknown>;
  /** false: the tool's answers change from call to call (time, randomness); only "both succeeded" is checked. */
  compare?: boolean;
  /** Paths of the answer not compared, as `mig mcp parity` names them (`content[1].resource.text`): a time, an id. */
  ignore?: string[];
}

export type ArgsFile = Record<string, ToolEntry>;

const ENTRY_KEYS = new Set(["arguments", "compare", "ignore"]);

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** Reads `{tool: {arguments?: {...}, compare?: false, ignore?: [path]}}` from a JSON or YAML file; every problem is named. */
export function readArgsFile(path: string): ArgsFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read the args file ${path}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(
      `the args file ${path} is not ${/\.json$/i.test(path) ? "JSON" : "YAML"}: ${(err as Error).message}`,
    );
  }
  if (value === null || value === undefined) return {};
  if (!isObject(value))
    throw new Error(`the args file ${path} must map tool names to entries: {echo: {arguments: {…}}}`);
  const file: ArgsFile = {};
  for (const [tool, entry] of Object.entries(value)) {
    const where = `${path}: ${tool}`;
    if (!isObject(entry))
      throw new Error(`${where} must be an object: {arguments?: {…}, compare?: false, ignore?: [path, …]}`);
    const unknown = Object.keys(entry).filter((key) => !ENTRY_KEYS.has(key));
    if (unknown.length > 0)
      throw new Error(
        `${where} has ${unknown.join(", ")}; an entry holds arguments (an object), compare (a boolean) and ignore (a list of paths)`,
      );
    if (entry.arguments !== undefined && !isObject(entry.arguments))
      throw new Error(`${where}: arguments must be an object`);
    if (entry.compare !== undefined && typeof entry.compare !== "boolean")
      throw new Error(`${where}: compare must be true or false`);
    if (
      entry.ignore !== undefined &&
      !(Array.isArray(entry.ignore) && entry.ignore.every((path) => typeof path === "string" && path !== ""))
    )
      throw new Error(`${where}: ignore must be a list of paths, such as [content[1].resource.text]`);
    file[tool] = entry as ToolEntry;
  }
  return file;
}

const ajv = new Ajv2020({ allErrors: true, strict: false });
formats.default(ajv);

/** The arguments to call `tool` with, or why there are none. */
export function argumentsFor(
  tool: Tool,
  entry: ToolEntry | undefined,
): { arguments: Record<string, unknown>; source: string } | { skip: string } {
  if (entry?.arguments) return { arguments: entry.arguments, source: "args file" };
  const { $schema: _dialect, ...schema } = (tool.inputSchema ?? { type: "object" }) as Record<string, unknown>;
  const examples = Array.isArray(schema.examples) ? schema.examples.filter(isObject) : [];
  const candidate = examples[0] ?? simplestValue(schema);
  if (!isObject(candidate)) return { skip: `no arguments: ${missingOf(schema) ?? "the input schema gives no object"}` };
  let validate: ReturnType<typeof ajv.compile>;
  try {
    validate = ajv.compile(schema);
  } catch {
    // A schema this validator cannot load: the server checks the arguments itself.
    return { arguments: candidate, source: examples[0] ? "schema examples" : "schema" };
  } finally {
    ajv.removeSchema(schema);
  }
  if (!validate(candidate)) {
    const why = (validate.errors ?? []).map((e) => `${e.instancePath || "arguments"} ${e.message}`).join("; ");
    return { skip: `no arguments: ${JSON.stringify(candidate)} from the schema is refused (${why})` };
  }
  return { arguments: candidate, source: examples[0] ? "schema examples" : "schema" };
}

/**
 * The simplest value a schema takes, or undefined when it cannot be told: `const`, `default`, the first example or
 * enum value; an object of its defaults and its required properties; `minItems` items; the empty string (or
 * `minLength` letters), the minimum number (0 when allowed), false, null. Formats and patterns are not guessed: the
 * schema check that follows refuses a value that misses them.
 */
function simplestValue(schema: unknown, depth = 0): unknown {
  if (schema === true || (isObject(schema) && Object.keys(schema).length === 0)) return null;
  if (!isObject(schema) || depth > 16) return undefined;
  if ("const" in schema) return schema.const;
  if ("default" in schema) return schema.default;
  if (Array.isArray(schema.examples) && schema.examples.length > 0) return schema.examples[0];
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  for (const key of ["anyOf", "oneOf"] as const) {
    if (Array.isArray(schema[key])) {
      for (const option of schema[key]) {
        const value = simplestValue(option, depth + 1);
        if (value !== undefined) return value;
      }
      return undefined;
    }
  }
  const types = Array.isArray(schema.type) ? schema.type : [schema.type ?? (schema.properties ? "object" : undefined)];
  const type = types.find((t) => t !== "null") ?? types[0];
  switch (type) {
    case "object": {
      const properties = isObject(schema.properties) ? schema.properties : {};
      const value: Record<string, unknown> = {};
      for (const [name, property] of Object.entries(properties)) {
        if (isObject(property) && ("default" in property || "const" in property))
          value[name] = simplestValue(property, depth + 1);
      }
      for (const name of Array.isArray(schema.required) ? schema.required.map(String) : []) {
        if (name in value) continue;
        const property = simplestValue(properties[name] ?? {}, depth + 1);
        if (property === undefined) return undefined;
        value[name] = property;
      }
      return value;
    }
    case "array": {
      const count = typeof schema.minItems === "number" ? schema.minItems : 0;
      const items = Array.from({ length: count }, () => simplestValue(schema.items ?? {}, depth + 1));
      return items.includes(undefined) ? undefined : items;
    }
    case "string":
      return "a".repeat(typeof schema.minLength === "number" ? schema.minLength : 0);
    case "number":
    case "integer": {
      const floor =
        typeof schema.minimum === "number"
          ? schema.minimum
          : typeof schema.exclusiveMinimum === "number"
            ? schema.exclusiveMinimum + 1
            : undefined;
      const ceiling = typeof schema.maximum === "number" ? schema.maximum : undefined;
      if (floor !== undefined && floor > 0) return type === "integer" ? Math.ceil(floor) : floor;
      if (ceiling !== undefined && ceiling < 0) return type === "integer" ? Math.floor(ceiling) : ceiling;
      return 0;
    }
    case "boolean":
      return false;
    case "null":
      return null;
    default:
      return undefined;
  }
}

/** Which required property (at the top) no value could be built for, to say why a tool is skipped. */
function missingOf(schema: Record<string, unknown>): string | undefined {
  const properties = isObject(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required.map(String) : [];
  const missing = required.find((name) => simplestValue(properties[name] ?? {}) === undefined);
  return missing === undefined ? undefined : `no value can be built for the required property "${missing}"`;
}
