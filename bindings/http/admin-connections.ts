// GET /admin/v0.1/connections: the live connections of this process by binding and tenant, in the standard's shape.
import type { IncomingMessage, ServerResponse } from "node:http";
import { type AdminView, adminTenant, type MigRuntime } from "../../runtime/mod.ts";
import type { ConnectionEntry } from "./connection-census.ts";
import type { ListenerSelf } from "./listener-self.ts";
import { sendJson } from "./respond.ts";

/**
 * The streams and subscriptions the runtime holds that this listener did not open: the NATS and gRPC bindings'
 * (and streams handed to a worker). The runtime records their tenant, not the binding that opened them nor when.
 */
function otherBindings(runtime: MigRuntime, http: ConnectionEntry[]): ConnectionEntry[] {
  const httpStreams = new Set<unknown>();
  const httpSubscriptions = new Set<unknown>();
  for (const entry of http) {
    if (entry.kind === "ws_stream" || entry.kind === "sse_stream") httpStreams.add(entry.meta?.message_id);
    if (entry.kind === "sse_subscribe") httpSubscriptions.add(entry.meta?.subscription_id);
  }
  const found: ConnectionEntry[] = [];
  for (const [messageId, stream] of runtime.work.streams) {
    if (httpStreams.has(messageId)) continue;
    found.push({
      id: `stream-${messageId}`,
      protocol: "nats_or_grpc",
      kind: "stream",
      tenant_id: stream.tenant,
      actor: stream.subject,
      meta: { message_id: messageId },
    });
  }
  for (const subscription of runtime.subscriptions.list()) {
    const { info } = subscription;
    if (httpSubscriptions.has(info.subscription_id)) continue;
    found.push({
      id: `subscription-${info.subscription_id}`,
      protocol: "nats_or_grpc",
      kind: "subscription",
      tenant_id: info.header.tenant_id,
      meta: {
        subscription_id: info.subscription_id,
        topic: info.topic,
        ...(info.consumer_id !== undefined ? { consumer_id: info.consumer_id } : {}),
        state: subscription.stats().state,
      },
    });
  }
  return found;
}

/** `?tenant_id=&protocol=&kind=`; a tenant-scoped admin sees its own tenant and may name no other. */
function filtersOf(req: IncomingMessage, view: AdminView, globalScope: string) {
  const query = new URL(req.url ?? "/", "http://x").searchParams;
  const asked = query.get("tenant_id") || undefined;
  return {
    tenant: adminTenant(view, asked, `list tenant "${asked}"'s connections`, globalScope),
    protocol: query.get("protocol") || undefined,
    kind: query.get("kind") || undefined,
  };
}

export async function serveConnections(
  runtime: MigRuntime,
  req: IncomingMessage,
  res: ServerResponse,
  view: AdminView,
  self: ListenerSelf,
): Promise<void> {
  const filters = filtersOf(req, view, runtime.config.adminGlobalScope);
  const now = new Date().toISOString();
  const http = self.census.entries();
  const connections = [...http, ...otherBindings(runtime, http)].filter(
    (entry) =>
      (filters.tenant === undefined || entry.tenant_id === filters.tenant) &&
      (filters.protocol === undefined || entry.protocol === filters.protocol) &&
      (filters.kind === undefined || entry.kind === filters.kind),
  );
  // Newest first, as the standard's reference gateway lists them; those without a known start last.
  const startOf = (entry: ConnectionEntry) => entry.started_at ?? "";
  connections.sort((a, b) => (startOf(a) < startOf(b) ? 1 : startOf(a) > startOf(b) ? -1 : 0));
  // Counted in Maps: a tenant id is the caller's text, and a plain object would drop a key such as "__proto__".
  const byProtocol = new Map<string, number>();
  const byKind = new Map<string, number>();
  const byTenant = new Map<string, number>();
  const count = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  for (const entry of connections) {
    count(byProtocol, entry.protocol);
    count(byKind, entry.kind);
    if (entry.tenant_id !== undefined) count(byTenant, entry.tenant_id);
  }
  sendJson(res, 200, {
    generated_at: now,
    summary: {
      total: connections.length,
      by_protocol: Object.fromEntries(byProtocol),
      by_kind: Object.fromEntries(byKind),
      by_tenant: Object.fromEntries(byTenant),
      nats_binding_active: self.natsBinding,
    },
    connections,
  });
}
