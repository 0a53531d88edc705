// tools/list ← DISCOVER and tools/call → INVOKE (unary, or server_stream with one progress notification per frame).
import type { CallToolResult, ServerContext, Tool } from "@modelcontextprotocol/server";
import { MigError, toMigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, InvocationMode, JsonObject } from "../../schemas/types.ts";
import type { McpBackend, McpCall } from "./backend.ts";
import { messageIdFor } from "./correlation.ts";
import { errorData, isToolError, protocolError, unknownName } from "./json-rpc-errors.ts";
import type { McpSurface, ToolEntry } from "./manifest.ts";
import { type ClientIdentity, callOf, metaOf } from "./mcp-call.ts";
import { SchemaReader } from "./tool-schemas.ts";

/** What a request handler works with for its caller: the MIG side, the names, and the client when it is known. */
export interface CallerContext {
  backend: McpBackend;
  surface: McpSurface;
  client?: ClientIdentity | undefined;
}

/** Whether a tool can be called at all: without streaming tools, one that only streams is not shown. */
function callable(modes: readonly InvocationMode[], surface: McpSurface): boolean {
  return modes.includes("unary") || (surface.allowStreaming && modes.includes("server_stream"));
}

export async function listTools(tools: CallerContext, ctx: ServerContext): Promise<{ tools: Tool[] }> {
  const { backend, surface } = tools;
  const visible = await backend.discover(callOf(ctx, undefined, tools.client));
  const reader = new SchemaReader(backend);
  const entries = surface.tools(visible).filter((entry) => callable(entry.descriptor.modes ?? [], surface));
  return { tools: await Promise.all(entries.map((entry) => toolOf(entry, entry.descriptor, reader))) };
}

async function toolOf(
  entry: ToolEntry,
  descriptor: Partial<CapabilityDescriptor>,
  reader: SchemaReader,
): Promise<Tool> {
  const { input, output } = await reader.of(descriptor);
  const modes = descriptor.modes ?? [];
  const meta: JsonObject = { "mig/capability": entry.capability };
  if (descriptor.version !== undefined) meta["mig/version"] = descriptor.version;
  meta["mig/modes"] = modes;
  if (entry.mapping?.policy_tags) meta["mig/policy_tags"] = entry.mapping.policy_tags;
  if (entry.mapping?.billing_tier) meta["mig/billing_tier"] = entry.mapping.billing_tier;
  const tool: Tool = {
    name: entry.name,
    description:
      entry.mapping?.description ??
      `MIG capability ${entry.capability}${descriptor.version ? ` ${descriptor.version}` : ""} (${modes.join(", ")})`,
    inputSchema: input as Tool["inputSchema"],
    _meta: meta,
  };
  if (entry.mapping?.title) tool.title = entry.mapping.title;
  if (output) tool.outputSchema = output as Tool["outputSchema"];
  return tool;
}

/** Whether a call streams: the manifest's mode, else a stream when the client asked for progress or unary is missing. */
function streams(modes: readonly InvocationMode[], entry: ToolEntry, surface: McpSurface, progress: boolean): boolean {
  if (!surface.allowStreaming || !modes.includes("server_stream")) return false;
  if (entry.mapping?.mode !== undefined) return entry.mapping.mode === "server_stream";
  return progress || !modes.includes("unary");
}

export async function callTool(
  tools: CallerContext,
  params: { name: string; arguments?: Record<string, unknown> | undefined },
  ctx: ServerContext,
): Promise<CallToolResult> {
  const { backend, surface } = tools;
  const { name } = params;
  let call: McpCall;
  try {
    call = callOf(ctx, name, tools.client, surface.tool(name)?.mapping?.timeout_ms);
    if (surface.requireTraceparent && call.traceparent === undefined)
      throw new MigError("MIG_INVALID_REQUEST", "this endpoint requires a W3C traceparent in _meta.traceparent");
  } catch (err) {
    throw protocolError(err);
  }
  const entry = surface.tool(name);
  if (!entry) {
    await backend.refuse?.(unknownTool(name), call, name);
    throw unknownName("tool", name);
  }
  call.messageId = messageIdFor(backend, ctx.mcpReq.id);
  const payload = (params.arguments ?? {}) as JsonObject;
  const descriptor = await backend.describe(entry.capability, call);
  const progressToken = metaOf(ctx).progressToken as string | number | undefined;
  let frames = 0;
  try {
    // A capability the caller may not see is still asked for (unary), so that the runtime records the refusal
    // as it is; whatever it answers, the caller hears of an unknown tool.
    const output =
      descriptor && streams(descriptor.modes ?? [], entry, surface, progressToken !== undefined)
        ? await backend.stream(entry.capability, payload, call, (frame) => {
            frames++;
            if (progressToken === undefined) return;
            return ctx.mcpReq.notify({
              method: "notifications/progress",
              params: { progressToken, progress: frames, message: JSON.stringify(frame) },
            });
          })
        : await backend.invoke(entry.capability, payload, call);
    // The SDK client (2.4) dispatches a notification a microtask after a response it reads in the same chunk, and
    // drops progress that arrives after its call's result: the result leaves a turn after the last progress.
    if (frames > 0 && progressToken !== undefined) await new Promise((resolve) => setImmediate(resolve));
    return toolResult(output, call.messageId, entry.capability);
  } catch (err) {
    if (!descriptor) throw unknownName("tool", name);
    const error = toMigError(err);
    if (isToolError(error)) return toolErrorResult(error, call.messageId, entry.capability);
    throw protocolError(error);
  }
}

function unknownTool(name: string): MigError {
  return new MigError("MIG_UNSUPPORTED_CAPABILITY", `no tool is named ${name.slice(0, 200)}`);
}

/** The output as structuredContent and as one JSON text block (for clients that read only content). */
function toolResult(output: JsonObject, messageId: string, capability: string): CallToolResult {
  return {
    content: [{ type: "text", text: JSON.stringify(output) }],
    structuredContent: output,
    _meta: { "mig/message_id": messageId, "mig/capability": capability },
  };
}

/** A failure the model should see: the MIG error as one JSON text block, and in `_meta`. */
function toolErrorResult(error: MigError, messageId: string, capability: string): CallToolResult {
  return {
    isError: true,
    content: [{ type: "text", text: JSON.stringify({ error: error.toJSON() }) }],
    _meta: { "mig/message_id": messageId, "mig/capability": capability, "mig/error": { ...errorData(error) } },
  };
}
