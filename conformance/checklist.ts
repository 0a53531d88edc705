// The items of the standard's conformance checklist (conformance/CONFORMANCE-CHECKLIST.md), numbered so checks can name them.

export interface ChecklistItem {
  id: string;
  section: string;
  text: string;
}

const items: ChecklistItem[] = [
  { id: "CORE-1", section: "Core Profile", text: "HELLO negotiation implemented with deterministic version selection" },
  { id: "CORE-2", section: "Core Profile", text: "DISCOVER implemented with auth-scoped visibility" },
  { id: "CORE-3", section: "Core Profile", text: "Unary INVOKE implemented" },
  { id: "CORE-4", section: "Core Profile", text: "CANCEL implemented for in-flight invocations" },
  { id: "CORE-5", section: "Core Profile", text: "Standard MIG error model (code, message, retryable, details)" },
  { id: "CORE-6", section: "Core Profile", text: "MessageHeader fields present on all operations" },
  { id: "STREAM-1", section: "Streaming Profile", text: "StreamInvoke implemented" },
  { id: "STREAM-2", section: "Streaming Profile", text: "CANCEL terminates in-flight stream work" },
  { id: "STREAM-3", section: "Streaming Profile", text: "Backpressure signals are surfaced" },
  { id: "STREAM-4", section: "Streaming Profile", text: "Deadlines enforced for stream operations" },
  { id: "EVENT-1", section: "Evented Profile", text: "PUBLISH implemented" },
  { id: "EVENT-2", section: "Evented Profile", text: "SUBSCRIBE implemented" },
  { id: "EVENT-3", section: "Evented Profile", text: "Event ordering documented" },
  { id: "EVENT-4", section: "Evented Profile", text: "Replay behavior documented and tested" },
  { id: "FULL-1", section: "Full Profile", text: "Trace propagation supported (traceparent)" },
  { id: "FULL-2", section: "Full Profile", text: "Metrics by capability and error code" },
  { id: "FULL-3", section: "Full Profile", text: "Audit log includes actor, tenant, capability, outcome, timestamp" },
  { id: "FULL-4", section: "Full Profile", text: "Heartbeat/liveness behavior documented" },
  { id: "GRPC-1", section: "gRPC", text: "proto/mig/v0_1/mig.proto compiles" },
  { id: "GRPC-2", section: "gRPC", text: "Services map one-to-one to required MIG operations" },
  { id: "NATS-1", section: "NATS", text: "Subject conventions use mig.v0_1.<tenant>..." },
  { id: "NATS-2", section: "NATS", text: "Request/reply invocation tested" },
  { id: "NATS-3", section: "NATS", text: "Durable consumer and replay behavior validated (JetStream)" },
  { id: "HTTP-1", section: "HTTP", text: "All required routes implemented under /mig/v0.1/*" },
  { id: "HTTP-2", section: "HTTP", text: "SSE endpoint returns event envelopes" },
  { id: "HTTP-3", section: "HTTP", text: "WebSocket stream endpoint behavior documented" },
  { id: "MCP-1", section: "MCP Interop", text: "initialize <-> HELLO mapping works" },
  { id: "MCP-2", section: "MCP Interop", text: "tools/list <-> DISCOVER mapping works" },
  { id: "MCP-3", section: "MCP Interop", text: "tools/call <-> INVOKE mapping works" },
  { id: "MCP-4", section: "MCP Interop", text: "Error mapping follows docs/interop/MCP-MIG-MAPPING.md" },
  { id: "MCP-5", section: "MCP Interop", text: "Correlation IDs preserved end-to-end" },
  { id: "MCP-6", section: "MCP Interop", text: "Cancel propagation from MCP to MIG is verified" },
];

export const CHECKLIST: ReadonlyMap<string, ChecklistItem> = new Map(items.map((item) => [item.id, item]));
