// prompts/list ← the manifest's prompts the caller may see, their arguments read from the capability's input
// schema; prompts/get → INVOKE of the mapped capability with the arguments.
import type {
  GetPromptResult,
  Prompt,
  PromptArgument,
  PromptMessage,
  ServerContext,
} from "@modelcontextprotocol/server";
import { MigError } from "../../schemas/errors.ts";
import type { McpPromptMapping } from "../../schemas/mcp-manifest.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import { messageIdFor } from "./correlation.ts";
import { protocolError, unknownName } from "./json-rpc-errors.ts";
import { callOf } from "./mcp-call.ts";
import type { CallerContext } from "./tools.ts";

export async function listPrompts(context: CallerContext, ctx: ServerContext): Promise<{ prompts: Prompt[] }> {
  const { backend, surface } = context;
  const visible = await backend.discover(callOf(ctx, undefined, context.client));
  const byId = new Map(visible.map((descriptor) => [descriptor.id, descriptor]));
  const prompts: Prompt[] = [];
  for (const mapping of surface.prompts) {
    const descriptor = byId.get(mapping.mig_capability);
    if (descriptor) prompts.push(await promptOf(context, mapping, descriptor));
  }
  return { prompts: prompts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
}

/** A prompt's arguments: the properties of its capability's input schema, with their descriptions and `required`. */
async function promptOf(
  context: CallerContext,
  mapping: McpPromptMapping,
  descriptor: Partial<CapabilityDescriptor>,
): Promise<Prompt> {
  const schema = descriptor.input_schema_uri ? await context.backend.schema(descriptor.input_schema_uri) : undefined;
  const properties = (schema?.properties ?? {}) as Record<string, { description?: unknown }>;
  const required = new Set(Array.isArray(schema?.required) ? (schema.required as string[]) : []);
  const args: PromptArgument[] = Object.entries(properties).map(([name, property]) => {
    const argument: PromptArgument = { name, required: required.has(name) };
    if (typeof property?.description === "string") argument.description = property.description;
    return argument;
  });
  const prompt: Prompt = { name: mapping.mcp_name, arguments: args };
  if (mapping.title) prompt.title = mapping.title;
  prompt.description = mapping.description ?? `MIG capability ${mapping.mig_capability}`;
  return prompt;
}

export async function getPrompt(
  context: CallerContext,
  params: { name: string; arguments?: Record<string, string> | undefined },
  ctx: ServerContext,
): Promise<GetPromptResult> {
  const { backend, surface } = context;
  const { name } = params;
  let call: ReturnType<typeof callOf>;
  try {
    call = callOf(ctx, name, context.client);
  } catch (err) {
    throw protocolError(err);
  }
  const mapping = surface.prompt(name);
  if (!mapping) {
    await backend.refuse?.(new MigError("MIG_UNSUPPORTED_CAPABILITY", `no prompt is named ${name}`), call, name);
    throw unknownName("prompt", name);
  }
  call.messageId = messageIdFor(backend, ctx.mcpReq.id);
  const descriptor = await backend.describe(mapping.mig_capability, call);
  try {
    const output = await backend.invoke(mapping.mig_capability, (params.arguments ?? {}) as JsonObject, call);
    return promptResult(output);
  } catch (err) {
    if (!descriptor) throw unknownName("prompt", name);
    throw protocolError(err);
  }
}

/**
 * A capability's output as a prompt: its `messages` when it gives MCP prompt messages, else one user message with
 * its `text` (or `prompt`), else the output as JSON text; `description` when it has one.
 */
function promptResult(output: JsonObject): GetPromptResult {
  const result: GetPromptResult = { messages: [] };
  if (typeof output.description === "string") result.description = output.description;
  if (Array.isArray(output.messages) && output.messages.every(isPromptMessage)) {
    result.messages = output.messages as PromptMessage[];
    return result;
  }
  const text =
    typeof output.text === "string"
      ? output.text
      : typeof output.prompt === "string"
        ? output.prompt
        : JSON.stringify(output);
  result.messages = [{ role: "user", content: { type: "text", text } }];
  return result;
}

function isPromptMessage(value: unknown): boolean {
  const message = value as { role?: unknown; content?: { type?: unknown } } | null;
  return (
    (message?.role === "user" || message?.role === "assistant") &&
    typeof message.content === "object" &&
    message.content !== null &&
    typeof message.content.type === "string"
  );
}
