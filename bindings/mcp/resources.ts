// resources/list, resources/templates/list ← the manifest's resources the caller may see; resources/read → INVOKE
// of the mapped capability with a `uri` payload (the standard's §8).
import {
  type ReadResourceResult,
  type Resource,
  ResourceNotFoundError,
  type ResourceTemplateType,
  type ServerContext,
  UriTemplate,
} from "@modelcontextprotocol/server";
import { MigError } from "../../schemas/errors.ts";
import type { McpResourceMapping } from "../../schemas/mcp-manifest.ts";
import type { JsonObject } from "../../schemas/types.ts";
import { messageIdFor } from "./correlation.ts";
import { protocolError } from "./json-rpc-errors.ts";
import { callOf } from "./mcp-call.ts";
import type { CallerContext } from "./tools.ts";

const byKey =
  <T>(key: (item: T) => string) =>
  (a: T, b: T) =>
    key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;

/** The manifest's resources whose capability DISCOVER shows this caller. */
async function visibleResources(context: CallerContext, ctx: ServerContext): Promise<McpResourceMapping[]> {
  const visible = await context.backend.discover(callOf(ctx, undefined, context.client));
  const ids = new Set(visible.map((descriptor) => descriptor.id));
  return context.surface.resources.filter((resource) => ids.has(resource.mig_capability));
}

export async function listResources(context: CallerContext, ctx: ServerContext): Promise<{ resources: Resource[] }> {
  const resources: Resource[] = [];
  for (const mapping of await visibleResources(context, ctx)) {
    if (UriTemplate.isTemplate(mapping.mcp_uri_pattern)) continue;
    const resource: Resource = { uri: mapping.mcp_uri_pattern, name: mapping.name ?? mapping.mcp_uri_pattern };
    describeInto(resource, mapping);
    resources.push(resource);
  }
  return { resources: resources.sort(byKey((r) => r.uri)) };
}

export async function listResourceTemplates(
  context: CallerContext,
  ctx: ServerContext,
): Promise<{ resourceTemplates: ResourceTemplateType[] }> {
  const templates: ResourceTemplateType[] = [];
  for (const mapping of await visibleResources(context, ctx)) {
    if (!UriTemplate.isTemplate(mapping.mcp_uri_pattern)) continue;
    const template: ResourceTemplateType = {
      uriTemplate: mapping.mcp_uri_pattern,
      name: mapping.name ?? mapping.mcp_uri_pattern,
    };
    describeInto(template, mapping);
    templates.push(template);
  }
  return { resourceTemplates: templates.sort(byKey((t) => t.uriTemplate)) };
}

function describeInto(
  target: { title?: string; description?: string; mimeType?: string },
  mapping: McpResourceMapping,
) {
  if (mapping.title) target.title = mapping.title;
  if (mapping.description) target.description = mapping.description;
  if (mapping.mime_type) target.mimeType = mapping.mime_type;
}

/** The first mapping whose URI (or template) the URI matches. */
function mappingOf(resources: readonly McpResourceMapping[], uri: string): McpResourceMapping | undefined {
  return resources.find((mapping) =>
    UriTemplate.isTemplate(mapping.mcp_uri_pattern)
      ? new UriTemplate(mapping.mcp_uri_pattern).match(uri) !== null
      : mapping.mcp_uri_pattern === uri,
  );
}

export async function readResource(
  context: CallerContext,
  params: { uri: string },
  ctx: ServerContext,
): Promise<ReadResourceResult> {
  const { backend, surface } = context;
  const { uri } = params;
  const mapping = mappingOf(surface.resources, uri);
  let call: ReturnType<typeof callOf>;
  try {
    call = callOf(ctx, uri, context.client);
  } catch (err) {
    throw protocolError(err);
  }
  if (!mapping) {
    await backend.refuse?.(new MigError("MIG_NOT_FOUND", `no resource matches ${uri.slice(0, 200)}`), call, uri);
    throw new ResourceNotFoundError(uri);
  }
  call.messageId = messageIdFor(backend, ctx.mcpReq.id);
  const descriptor = await backend.describe(mapping.mig_capability, call);
  try {
    const output = await backend.invoke(mapping.mig_capability, { uri }, call);
    return { contents: [contentsOf(uri, output, mapping)] };
  } catch (err) {
    // As for tools: a capability the caller may not see reads as a resource that does not exist.
    if (!descriptor) throw new ResourceNotFoundError(uri);
    throw protocolError(err);
  }
}

/**
 * A capability's output as resource contents: `text` (with `mime_type`, else the mapping's, else text/plain) or
 * `blob` (base64) when it has one, else the output itself as JSON.
 */
function contentsOf(
  uri: string,
  output: JsonObject,
  mapping: McpResourceMapping,
): ReadResourceResult["contents"][number] {
  const mimeType = typeof output.mime_type === "string" ? output.mime_type : mapping.mime_type;
  if (typeof output.text === "string") return { uri, mimeType: mimeType ?? "text/plain", text: output.text };
  if (typeof output.blob === "string")
    return { uri, mimeType: mimeType ?? "application/octet-stream", blob: output.blob };
  return { uri, mimeType: "application/json", text: JSON.stringify(output) };
}
