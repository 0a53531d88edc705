// One MCP server instance for one caller (per HTTP request at /mcp, per connection on stdio): the SDK's low-level
// Server with handlers that take capabilities' JSON Schemas as they are, over a backend (bindings/mcp/backend.ts).
import { Server, type ServerCapabilities } from "@modelcontextprotocol/server";
import type { HelloResponse } from "../../schemas/types.ts";
import type { McpBackend } from "./backend.ts";
import { stableMessageId } from "./correlation.ts";
import type { McpSurface } from "./manifest.ts";
import type { ClientIdentity } from "./mcp-call.ts";
import { getPrompt, listPrompts } from "./prompts.ts";
import { listResources, listResourceTemplates, readResource } from "./resources.ts";
import { type CallerContext, callTool, listTools } from "./tools.ts";

/** What every instance says it is: the same on every gateway, since a stateless client may reach any of them. */
export const SERVER_INFO = { name: "mig-runtime", title: "MIG v0.1 gateway", version: "0.1.0" };

export interface McpServerOptions {
  backend: McpBackend;
  surface: McpSurface;
  /** The HELLO answered for an opening request (initialize, server/discover), shown in the instructions. */
  hello?: HelloResponse | undefined;
  /** The client a 2025-era opening named, when known. */
  client?: ClientIdentity | undefined;
  /**
   * Answer `notifications/cancelled` with a CANCEL of the stable message id (stateless HTTP, where the cancelled
   * request lives in another instance, maybe another process). Elsewhere the SDK aborts the request's signal.
   */
  cancelByNotification?: boolean;
  onerror?: (error: Error) => void;
}

/** Tools always; resources and prompts when the manifest maps any: the same answer on every request of a client. */
export function capabilitiesOf(surface: McpSurface): ServerCapabilities {
  const capabilities: ServerCapabilities = { tools: {} };
  if (surface.hasResources) capabilities.resources = {};
  if (surface.hasPrompts) capabilities.prompts = {};
  return capabilities;
}

function instructionsOf(hello: HelloResponse | undefined): string {
  const what =
    "Each tool is a capability of a MIG gateway; its result is the capability's output (structuredContent). " +
    "Send _meta.traceparent to join a trace, _meta.deadline_ms to bound a call.";
  return hello ? `MIG ${hello.selected_version}, server ${hello.server_id}. ${what}` : what;
}

export function buildMcpServer(options: McpServerOptions): Server {
  const { backend, surface } = options;
  const server = new Server(SERVER_INFO, {
    capabilities: capabilitiesOf(surface),
    instructions: instructionsOf(options.hello),
  });
  if (options.onerror) server.onerror = options.onerror;
  // A stdio connection's 2025-era client named itself at initialize; later calls carry it in their meta.
  const client = (): ClientIdentity | undefined => options.client ?? server.getClientVersion();
  const context = (): CallerContext => ({ backend, surface, client: client() });

  server.setRequestHandler("tools/list", (_request, ctx) => listTools(context(), ctx));
  server.setRequestHandler("tools/call", async (request, ctx) => {
    const result = await callTool(context(), request.params, ctx);
    return server.projectCallToolResult(result, undefined);
  });
  if (surface.hasResources) {
    server.setRequestHandler("resources/list", (_request, ctx) => listResources(context(), ctx));
    server.setRequestHandler("resources/templates/list", (_request, ctx) => listResourceTemplates(context(), ctx));
    server.setRequestHandler("resources/read", (request, ctx) => readResource(context(), request.params, ctx));
  }
  if (surface.hasPrompts) {
    server.setRequestHandler("prompts/list", (_request, ctx) => listPrompts(context(), ctx));
    server.setRequestHandler("prompts/get", (request, ctx) => getPrompt(context(), request.params, ctx));
  }
  const key = backend.correlationKey;
  if (options.cancelByNotification && key !== undefined) {
    server.setNotificationHandler("notifications/cancelled", async (notification) => {
      const { requestId, reason } = notification.params as { requestId?: string | number; reason?: string };
      if (requestId === undefined) return;
      const call = { method: "notifications/cancelled", requestId, clientName: client()?.name };
      const why = reason
        ? `the MCP client cancelled the call: ${String(reason).slice(0, 200)}`
        : "the MCP client cancelled the call";
      await backend.cancel(stableMessageId(key, requestId), why, call).catch((err: unknown) => {
        options.onerror?.(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }
  return server;
}
