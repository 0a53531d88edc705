// A capability's payload schemas as an MCP tool carries them: inline bodies, with the root an object as MCP requires.
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { McpBackend } from "./backend.ts";

/** What a tool may take when its input schema cannot be read (a remote endpoint that shows no schema bodies). */
const ANY_OBJECT: JsonObject = { type: "object" };

/**
 * The input schema of a tool. A MIG payload is always a JSON object, so a schema without a root type gets
 * `type: "object"`; a schema whose root is another type (it could never be met) is shown as any object.
 */
export function inputSchemaOf(schema: JsonObject | undefined): JsonObject {
  if (schema === undefined) return ANY_OBJECT;
  if (schema.type === "object") return schema;
  if (schema.type === undefined) return { type: "object", ...schema };
  return ANY_OBJECT;
}

/** The output schema, only when its root is an object (MCP's rule); otherwise the tool has none. */
export function outputSchemaOf(schema: JsonObject | undefined): JsonObject | undefined {
  return schema?.type === "object" ? schema : undefined;
}

/** Reads a descriptor's two schemas through the backend, each URI once per request. */
export class SchemaReader {
  private readonly read = new Map<string, Promise<JsonObject | undefined>>();

  constructor(private readonly backend: McpBackend) {}

  private body(uri: string | undefined): Promise<JsonObject | undefined> {
    if (uri === undefined) return Promise.resolve(undefined);
    let body = this.read.get(uri);
    if (!body) this.read.set(uri, (body = this.backend.schema(uri).catch(() => undefined)));
    return body;
  }

  async of(descriptor: Partial<CapabilityDescriptor>): Promise<{ input: JsonObject; output: JsonObject | undefined }> {
    const [input, output] = await Promise.all([
      this.body(descriptor.input_schema_uri),
      this.body(descriptor.output_schema_uri),
    ]);
    return { input: inputSchemaOf(input), output: outputSchemaOf(output) };
  }
}
