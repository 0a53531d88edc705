// The span of one MIG operation as a binding received it (HELLO, DISCOVER, INVOKE, CANCEL, PUBLISH, SUBSCRIBE,
// HEARTBEAT): a child of the caller's `traceparent` (header field, HTTP header, NATS header, gRPC metadata or MCP
// `_meta`, which every binding puts into the body's header), named `mig.<operation>`.
import type { Attributes } from "@opentelemetry/api";
import { remoteContext, type Span, SpanKind, startSpan, traceparentOf } from "../base/tracing.ts";
import type { RequestContext } from "../protocol/request-context.ts";

const TARGET_ATTRIBUTE: Record<string, string> = {
  invoke: "mig.capability",
  stream: "mig.capability",
  publish: "mig.topic",
  subscribe: "mig.topic",
  cancel: "mig.target_message_id",
};

const text = (value: unknown): string | undefined => (typeof value === "string" && value !== "" ? value : undefined);

/**
 * Starts the operation's span. A caller that sent no traceparent starts a trace here, and the request's header
 * takes this span's, so that the answer's header, the audit record and the work sent on all name the same trace.
 */
export function startOperationSpan(
  operation: string,
  body: unknown,
  request: RequestContext,
  target: string | undefined,
): Span {
  const header = headerOf(body) ?? newHeaderOf(body);
  const attributes: Attributes = { "mig.operation": operation, "mig.binding": request.binding };
  const tenant = text(header?.tenant_id) ?? request.tenant ?? request.principal.tenant_id;
  if (tenant !== undefined) attributes["mig.tenant"] = tenant;
  const messageId = text(header?.message_id);
  if (messageId !== undefined) attributes["mig.message_id"] = messageId;
  const targetAttribute = TARGET_ATTRIBUTE[operation];
  if (targetAttribute !== undefined && target !== undefined) attributes[targetAttribute] = target;
  if (request.mcp !== undefined) {
    attributes["mig.mcp.method"] = request.mcp.method;
    if (request.mcp.name !== undefined) attributes["mig.mcp.name"] = request.mcp.name;
  }
  const traceparent = text(header?.traceparent);
  const span = startSpan(`mig.${operation}`, SpanKind.SERVER, remoteContext(traceparent), attributes);
  if (traceparent === undefined && header !== undefined) header.traceparent = traceparentOf(span);
  return span;
}

/** What the answer says of the request that the span could not know before: its message id and tenant. */
export function noteAnswer(span: Span, answer: unknown): void {
  const header = headerOf(answer);
  if (header === undefined) return;
  const messageId = text(header.message_id);
  if (messageId !== undefined) span.setAttribute("mig.message_id", messageId);
  const tenant = text(header.tenant_id);
  if (tenant !== undefined) span.setAttribute("mig.tenant", tenant);
}

/** A header made for a body that came without one, so that it can carry this span's traceparent. */
function newHeaderOf(body: unknown): Record<string, unknown> | undefined {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return undefined;
  const target = body as { header?: unknown };
  if (target.header !== undefined && target.header !== null) return undefined; // a header of the wrong type: refused later
  const header: Record<string, unknown> = {};
  target.header = header;
  return header;
}

function headerOf(value: unknown): Record<string, unknown> | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  const header = (value as { header?: unknown }).header;
  if (header === null || typeof header !== "object" || Array.isArray(header)) return undefined;
  return header as Record<string, unknown>;
}
