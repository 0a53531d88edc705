// What the MCP server needs of MIG, for one caller: the runtime behind /mcp, or a MIG client behind `mig mcp --stdio`.
import type { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, HelloResponse, JsonObject } from "../../schemas/types.ts";

/** The MCP call a MIG operation is made for: names it carries into the header's meta and the audit record. */
export interface McpCall {
  /** The MCP method, e.g. `tools/call`. */
  method: string;
  /** The tool or prompt name, or the resource URI. */
  name?: string | undefined;
  /** The JSON-RPC request id (the `meta.mcp.request_id` and, for a stateless HTTP call, its message id's seed). */
  requestId?: string | number | undefined;
  clientName?: string | undefined;
  clientVersion?: string | undefined;
  /** The MIG message id of the operation (a new UUID when unset). */
  messageId?: string | undefined;
  traceparent?: string | undefined;
  /** The call's deadline in ms (the runtime's default when unset). */
  deadlineMs?: number | undefined;
  /** A pinned capability version or semver range (`_meta["mig.capability_version"]`), as on every binding. */
  capabilityVersion?: string | undefined;
  /** Aborts when the MCP caller is gone or cancelled the call: the invocation is then cancelled. */
  signal?: AbortSignal | undefined;
}

/** The standard's §8 meta keys of the MIG header of a request made for an MCP call. */
export function mcpMeta(call: McpCall): JsonObject {
  const meta: JsonObject = { "mcp.method": call.method, "mig.binding": "mcp" };
  if (call.requestId !== undefined) meta["mcp.request_id"] = String(call.requestId);
  if (call.name !== undefined) meta["mcp.name"] = call.name;
  if (call.clientName !== undefined) meta["mcp.client_name"] = call.clientName;
  if (call.clientVersion !== undefined) meta["mcp.client_version"] = call.clientVersion;
  if (call.capabilityVersion !== undefined) meta["mig.capability_version"] = call.capabilityVersion;
  return meta;
}

/** One frame of a stream, as the MCP server forwards it (a progress notification); resolve once it is sent. */
export type FrameListener = (payload: JsonObject) => Promise<void> | void;

/**
 * The MIG operations of one caller. Every method throws a MigError for a refusal or a failure, so that the MCP
 * server turns errors into JSON-RPC errors or error results in one place (bindings/mcp/json-rpc-errors.ts).
 */
export interface McpBackend {
  hello(call: McpCall): Promise<HelloResponse>;
  /** DISCOVER: the capabilities this caller may see, with schema URIs. */
  discover(call: McpCall): Promise<Partial<CapabilityDescriptor>[]>;
  /** One capability this caller may see, or undefined (as for one that does not exist). */
  describe(capability: string, call: McpCall): Promise<Partial<CapabilityDescriptor> | undefined>;
  /** The body of a schema named by URI, when this backend can read it. */
  schema(uri: string): Promise<JsonObject | undefined>;
  /** A unary INVOKE; resolves with the output payload. */
  invoke(capability: string, payload: JsonObject, call: McpCall): Promise<JsonObject>;
  /** A server_stream INVOKE: each data frame to `onFrame` in order; resolves with the terminal frame's payload. */
  stream(capability: string, payload: JsonObject, call: McpCall, onFrame: FrameListener): Promise<JsonObject>;
  /** Records a call refused before it reached a MIG operation (an unknown name), as the audit log's `mcp` operation. */
  refuse?(error: MigError, call: McpCall, target: string): Promise<void>;
  /** CANCEL of a message id of this caller's tenant; quiet when nothing by that id runs. */
  cancel(messageId: string, reason: string, call: McpCall): Promise<void>;
  /**
   * A key of the caller (tenant and subject) when request ids should become message ids stably (stateless HTTP,
   * where a cancellation may reach another process than the call); undefined: message ids are random.
   */
  readonly correlationKey?: string | undefined;
  /** Whether a message id is in flight here (a stable id taken twice at once falls back to a random one). */
  inFlight?(messageId: string): boolean;
}
