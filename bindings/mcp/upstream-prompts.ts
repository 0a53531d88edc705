// An MCP server's prompts and resources as MIG capabilities: each prompt is `<namespace>.prompts.<prompt>` (its
// arguments as the input, `prompts/get`'s result as the output), and a server with resources has
// `<namespace>.resources.read` (`{uri}` → `resources/read`) and `<namespace>.resources.list`. All unary.
import type { Prompt } from "@modelcontextprotocol/client";
import {
  type CapabilityDefinition,
  checkDottedName,
  defineCapability,
  type InvocationContext,
  type Logger,
} from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { McpUpstream } from "./upstream.ts";
import { ANY_RESULT, contextMeta } from "./upstream-call.ts";
import { canonical, capabilityPartOf, digest, versionOf } from "./upstream-tools.ts";

const PROMPT_OUTPUT: JsonObject = {
  type: "object",
  required: ["messages"],
  properties: { description: { type: "string" }, messages: { type: "array" } },
};
const READ_INPUT: JsonObject = {
  type: "object",
  required: ["uri"],
  properties: { uri: { type: "string", description: "The resource's URI, as resources.list names it" } },
};
const READ_OUTPUT: JsonObject = { type: "object", required: ["contents"], properties: { contents: { type: "array" } } };
const LIST_INPUT: JsonObject = { type: "object" };
const LIST_OUTPUT: JsonObject = {
  type: "object",
  required: ["resources", "resource_templates"],
  properties: { resources: { type: "array" }, resource_templates: { type: "array" } },
};

/** The capability definitions of one upstream's prompts and resources, rebuilt when its prompt list changes. */
export class UpstreamPrompts {
  private known = new Map<string, { definition: CapabilityDefinition; builtFrom: string }>();
  private readonly reported = new Set<string>();

  constructor(
    private readonly upstream: McpUpstream,
    private readonly logger: Logger,
  ) {}

  definitions(): CapabilityDefinition[] {
    const namespace = this.upstream.namespace;
    if (namespace === undefined) return [];
    const version = versionOf(this.upstream);
    const next = new Map<string, { definition: CapabilityDefinition; builtFrom: string }>();
    const taken = new Set<string>();
    for (const prompt of this.upstream.prompts) {
      const part = capabilityPartOf(prompt.name);
      const id = part === undefined ? undefined : `${namespace}.prompts.${part}`;
      if (id === undefined || taken.has(id) || !validId(id)) {
        this.reportOnce(`prompt\u0000${prompt.name}`, () =>
          this.logger.warn(
            { upstream: namespace, prompt: prompt.name },
            "MCP prompt skipped: its name gives no capability id of its own",
          ),
        );
        continue;
      }
      taken.add(id);
      next.set(
        `prompt\u0000${prompt.name}`,
        this.reuse(`prompt\u0000${prompt.name}`, this.promptOf(id, prompt, version)),
      );
    }
    if (this.upstream.resources) {
      next.set("read", this.reuse("read", this.readOf(`${namespace}.resources.read`, version)));
      next.set("list", this.reuse("list", this.listOf(`${namespace}.resources.list`, version)));
    }
    this.known = next;
    return [...next.values()].map((known) => known.definition);
  }

  /** The definition known under `key` when it was built from the same facts, so the worker sees no change. */
  private reuse(
    key: string,
    built: { descriptor: CapabilityDescriptor; make: () => CapabilityDefinition },
  ): { definition: CapabilityDefinition; builtFrom: string } {
    const builtFrom = canonical(built.descriptor);
    const existing = this.known.get(key);
    return existing?.builtFrom === builtFrom ? existing : { definition: built.make(), builtFrom };
  }

  private descriptor(id: string, version: string, input: string, output: string): CapabilityDescriptor {
    return {
      id,
      version,
      modes: ["unary"],
      input_schema_uri: input,
      output_schema_uri: output,
      auth_scopes: [...this.upstream.spec.auth_scopes],
      qos: { delivery_semantics: "best_effort" },
    };
  }

  private promptOf(id: string, prompt: Prompt, version: string) {
    const args = prompt.arguments ?? [];
    // Prompt arguments are strings (MCP's GetPromptRequest).
    const input: JsonObject = {
      type: "object",
      properties: Object.fromEntries(
        args.map((a) => [a.name, a.description ? { type: "string", description: a.description } : { type: "string" }]),
      ),
      required: args.filter((a) => a.required).map((a) => a.name),
    };
    const ns = this.upstream.namespace!;
    const part = id.slice(`${ns}.prompts.`.length);
    const inputUri = `mcp://${ns}/prompts/${part}/input/${digest(input)}`;
    const outputUri = "mcp://prompt/output/v1";
    const descriptor = this.descriptor(id, version, inputUri, outputUri);
    const upstream = this.upstream;
    return {
      descriptor,
      make: () =>
        defineCapability(
          descriptor,
          (payload, context) =>
            request(upstream, `prompts/get of ${prompt.name}`, context, "prompts/get", {
              name: prompt.name,
              arguments: payload,
            }).then((result) => expectList(result, "messages", upstream, `prompts/get of ${prompt.name}`)),
          { [inputUri]: input, [outputUri]: PROMPT_OUTPUT },
        ),
    };
  }

  private readOf(id: string, version: string) {
    const inputUri = "mcp://resources/read/input/v1";
    const outputUri = "mcp://resources/read/output/v1";
    const descriptor = this.descriptor(id, version, inputUri, outputUri);
    const upstream = this.upstream;
    return {
      descriptor,
      make: () =>
        defineCapability(
          descriptor,
          (payload, context) =>
            request(upstream, `resources/read of ${String(payload.uri)}`, context, "resources/read", {
              uri: payload.uri,
            }).then((result) => expectList(result, "contents", upstream, "resources/read")),
          { [inputUri]: READ_INPUT, [outputUri]: READ_OUTPUT },
        ),
    };
  }

  private listOf(id: string, version: string) {
    const inputUri = "mcp://resources/list/input/v1";
    const outputUri = "mcp://resources/list/output/v1";
    const descriptor = this.descriptor(id, version, inputUri, outputUri);
    const upstream = this.upstream;
    return {
      descriptor,
      make: () =>
        defineCapability(
          descriptor,
          (_payload, context) =>
            upstream.run("resources/list", context.signal, async (session, signal) => {
              const options = { signal, timeout: context.header.deadline_ms + 1_000, cacheMode: "bypass" as const };
              const [resources, templates] = await Promise.all([
                session.client.listResources(undefined, options),
                session.client.listResourceTemplates(undefined, options),
              ]);
              return {
                resources: resources.resources as unknown as JsonObject[],
                resource_templates: templates.resourceTemplates as unknown as JsonObject[],
              };
            }),
          { [inputUri]: LIST_INPUT, [outputUri]: LIST_OUTPUT },
        ),
    };
  }

  private reportOnce(key: string, report: () => void): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    report();
  }
}

/** One request on the upstream's connection, with the invocation's signal, deadline and context. */
function request(
  upstream: McpUpstream,
  what: string,
  context: InvocationContext,
  method: string,
  params: Record<string, unknown>,
): Promise<unknown> {
  return upstream.run(what, context.signal, (session, signal) =>
    session.client.request({ method, params: { ...params, _meta: contextMeta(context) } }, ANY_RESULT, {
      signal,
      timeout: context.header.deadline_ms + 1_000,
    }),
  );
}

/** The result as the MIG output, when it is an object holding the list MCP promises under `key`. */
function expectList(result: unknown, key: string, upstream: McpUpstream, what: string): JsonObject {
  const value = result as Record<string, unknown> | null;
  if (value === null || typeof value !== "object" || !Array.isArray(value[key])) {
    throw new MigError("MIG_INTERNAL", `MCP server ${upstream.label} answered ${what} without a list of ${key}`, {
      details: { upstream: upstream.label },
    });
  }
  return value as JsonObject;
}

function validId(id: string): boolean {
  try {
    checkDottedName(id, "capability id", true);
    return true;
  } catch {
    return false;
  }
}
