// An MCP server's tools as MIG capability definitions: the naming rule (`<namespace>.<tool>`), the input and output
// schemas under `mcp://` URIs, and the descriptor; each definition's handlers run `tools/call` (upstream-call.ts).
import { createHash } from "node:crypto";
import type { Tool } from "@modelcontextprotocol/client";
import { Ajv2020 } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { type CapabilityDefinition, checkDottedName, defineCapability, type Logger } from "../../runtime/mod.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { McpUpstream } from "./upstream.ts";
import { callTool } from "./upstream-call.ts";

/** A capability id part as it is: dot-separated tokens of letters, digits, `-` and `_`. */
const ID_PART = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** The output schema of a tool that declares none: its output is the result's content, wrapped (upstream-call.ts). */
const CONTENT_OUTPUT: JsonObject = {
  type: "object",
  description:
    "The tool's result: its structuredContent when that is an object, else {content, text?, structured_content?}",
};

/** Compiles schemas as the runtime's schema registry does, to learn whether the registry will take them. */
const ajv = new Ajv2020({ allErrors: true, strict: false });
formats.default(ajv);

/**
 * The capability id part of a tool name. MCP tool names may hold characters a capability id may not (`/`, spaces,
 * …): each run of them becomes `_`, and empty dot-separated parts are dropped ("files/read all" → "files_read_all").
 * Undefined when nothing usable is left.
 */
export function capabilityPartOf(toolName: string): string | undefined {
  if (ID_PART.test(toolName)) return toolName;
  const mapped = toolName
    .replace(/[^A-Za-z0-9_.-]+/g, "_")
    .split(".")
    .filter((part) => part !== "")
    .join(".");
  return mapped === "" ? undefined : mapped;
}

/** JSON in a canonical form (keys sorted), so that workers attaching the same server make the same schema URIs. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The content-addressed last part of a schema URI: the first 12 hex digits of the SHA-256 of its canonical JSON. */
export const digest = (schema: JsonObject) => createHash("sha256").update(canonical(schema)).digest("hex").slice(0, 12);

/** A capability's version: the server's, when it reports a semver one. */
export const versionOf = (upstream: McpUpstream) =>
  SEMVER.test(upstream.server?.version ?? "") ? upstream.server!.version : "1.0.0";

/**
 * The capability definitions of one upstream's tools, rebuilt whenever its tool list changes. A tool whose
 * definition would come out the same keeps its definition object, so the worker sees no change for it.
 */
export class UpstreamTools {
  /** The definitions of the last list by tool name, with what each was built from. */
  private known = new Map<string, { definition: CapabilityDefinition; builtFrom: string }>();
  /** Tool names already reported as renamed or skipped (each is logged once, not at every new list). */
  private readonly reported = new Set<string>();

  constructor(
    private readonly upstream: McpUpstream,
    private readonly logger: Logger,
  ) {}

  definitions(): CapabilityDefinition[] {
    const namespace = this.upstream.namespace;
    if (namespace === undefined) return [];
    const version = versionOf(this.upstream);
    const parts = this.parts(namespace, this.upstream.tools);
    const next = new Map<string, { definition: CapabilityDefinition; builtFrom: string }>();
    for (const [part, tool] of parts) next.set(tool.name, this.definitionOf(namespace, part, tool, version));
    this.known = next;
    return [...next.values()].map((known) => known.definition);
  }

  /** Each tool's capability id part; names that map to another tool's part, or to nothing, are skipped. */
  private parts(namespace: string, tools: Tool[]): Map<string, Tool> {
    const parts = new Map<string, Tool>();
    // Names usable as they are first: a renamed tool never takes the id of a tool named exactly so.
    const ordered = [...tools].sort((a, b) => Number(!ID_PART.test(a.name)) - Number(!ID_PART.test(b.name)));
    for (const tool of ordered) {
      const part = capabilityPartOf(tool.name);
      const why =
        part === undefined
          ? "no letter, digit, '-' or '_' in its name"
          : parts.has(part)
            ? `its name maps to ${namespace}.${part}, which tool "${parts.get(part)!.name}" has`
            : idProblem(`${namespace}.${part}`);
      if (why !== undefined || part === undefined) {
        this.reportOnce(tool.name, () =>
          this.logger.warn(
            { upstream: namespace, tool: tool.name, why },
            "MCP tool skipped: its name gives no capability id of its own",
          ),
        );
        continue;
      }
      if (part !== tool.name) {
        this.reportOnce(tool.name, () =>
          this.logger.info(
            { upstream: namespace, tool: tool.name, capability: `${namespace}.${part}` },
            "MCP tool renamed: characters a capability id cannot hold became '_'",
          ),
        );
      }
      parts.set(part, tool);
    }
    return parts;
  }

  private reportOnce(toolName: string, report: () => void): void {
    if (this.reported.has(toolName)) return;
    this.reported.add(toolName);
    report();
  }

  private definitionOf(
    namespace: string,
    part: string,
    tool: Tool,
    version: string,
  ): { definition: CapabilityDefinition; builtFrom: string } {
    const id = `${namespace}.${part}`;
    const input = this.usableSchema(tool.inputSchema as JsonObject, id, "input");
    const declared = isObjectSchema(tool.outputSchema);
    const output = declared ? this.usableSchema(tool.outputSchema as JsonObject, id, "output") : CONTENT_OUTPUT;
    const inputUri = `mcp://${namespace}/${part}/input/${digest(input)}`;
    const outputUri = declared ? `mcp://${namespace}/${part}/output/${digest(output)}` : "mcp://content/output/v1";
    const descriptor: CapabilityDescriptor = {
      id,
      version,
      modes: ["unary", "server_stream"],
      input_schema_uri: inputUri,
      output_schema_uri: outputUri,
      auth_scopes: [...this.upstream.spec.auth_scopes],
      // A tool call may have effects: run once at most, never redelivered.
      qos: { delivery_semantics: "best_effort" },
    };
    const asTask = tool.execution?.taskSupport === "required";
    const builtFrom = canonical([descriptor, asTask, declared]);
    const existing = this.known.get(tool.name);
    if (existing?.builtFrom === builtFrom) return existing;
    const call = { upstream: this.upstream, tool: tool.name, declaresOutput: declared, asTask };
    const definition = defineCapability(
      descriptor,
      (payload, context) => callTool(call, payload, context),
      { [inputUri]: input, [outputUri]: output },
      (payload, context) => callTool(call, payload, context, (frame) => context.emit(frame)),
    );
    return { definition, builtFrom };
  }

  /**
   * A tool's schema as the schema registry will take it. `$schema` is dropped: MCP servers name draft-07, which the
   * registry's JSON Schema 2020-12 validator cannot load by URI, and the keywords tools use mean the same in both.
   * A schema that still does not compile is replaced by `{type: "object"}` (the server checks its own arguments).
   */
  private usableSchema(schema: JsonObject | undefined, id: string, which: "input" | "output"): JsonObject {
    const { $schema: _dialect, ...rest } = schema ?? { type: "object" };
    try {
      ajv.compile(rest);
      ajv.removeSchema(rest);
      return rest;
    } catch (err) {
      this.reportOnce(`${id}\u0000${which}`, () =>
        this.logger.warn(
          { capability: id, err: (err as Error).message },
          `MCP tool ${which} schema does not compile; the capability takes any object`,
        ),
      );
      return { type: "object" };
    }
  }
}

function isObjectSchema(schema: unknown): boolean {
  return schema !== null && typeof schema === "object" && (schema as { type?: unknown }).type === "object";
}

function idProblem(id: string): string | undefined {
  try {
    checkDottedName(id, "capability id", true);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
