// The MCP server's MIG side at /mcp: the runtime of this process, called with the caller's principal, so that
// policy, scopes, quotas, schema validation and audit are the runtime's, as for any other binding.
import type { FrameSink, McpMapping, MigRuntime, Principal, RequestContext, StreamSession } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, HelloResponse, JsonObject, StreamFrame } from "../../schemas/types.ts";
import { type FrameListener, type McpBackend, type McpCall, mcpMeta } from "./backend.ts";

/** The header of a MIG request made for an MCP call, with the standard's §8 meta keys. */
export function headerFor(call: McpCall, tenant: string | undefined): JsonObject {
  const header: JsonObject = { meta: mcpMeta(call) };
  if (tenant !== undefined) header.tenant_id = tenant;
  if (call.messageId !== undefined) header.message_id = call.messageId;
  if (call.traceparent !== undefined) header.traceparent = call.traceparent;
  if (call.deadlineMs !== undefined) header.deadline_ms = call.deadlineMs;
  return header;
}

export class RuntimeBackend implements McpBackend {
  readonly correlationKey: string | undefined;

  /**
   * `tenant` is the one the transport established (runtime.connectionTenant); `stableIds` asks for message ids made
   * from request ids (2025-era requests on stateless HTTP, bindings/mcp/correlation.ts).
   */
  constructor(
    private readonly runtime: MigRuntime,
    private readonly principal: Principal,
    private readonly tenant: string,
    stableIds: boolean,
  ) {
    this.correlationKey = stableIds ? `${tenant}\u0000${principal.subject}` : undefined;
  }

  private context(call: McpCall): RequestContext {
    const mcp: McpMapping = { method: call.method, name: call.name };
    if (call.requestId !== undefined) mcp.request_id = String(call.requestId);
    return { principal: this.principal, tenant: this.tenant, binding: "http", gone: call.signal, mcp };
  }

  hello(call: McpCall): Promise<HelloResponse> {
    const body = { header: headerFor(call, this.tenant), supported_versions: ["0.1"] };
    return this.runtime.hello(body, this.context(call));
  }

  async discover(call: McpCall): Promise<Partial<CapabilityDescriptor>[]> {
    const body = { header: headerFor(call, this.tenant), include_schema_refs: true, include_qos: true };
    return (await this.runtime.discover(body, this.context(call))).capabilities;
  }

  /** DISCOVER's rule for one capability (the policy's canSee), without a DISCOVER per call: the INVOKE is audited. */
  async describe(capability: string): Promise<Partial<CapabilityDescriptor> | undefined> {
    const descriptor = this.runtime.capabilities.get(capability)?.descriptor;
    if (!descriptor || !this.runtime.policy.canSee(this.principal, descriptor, this.tenant)) return undefined;
    return descriptor;
  }

  async schema(uri: string): Promise<JsonObject | undefined> {
    return this.runtime.schemas.get(uri);
  }

  async invoke(capability: string, payload: JsonObject, call: McpCall): Promise<JsonObject> {
    const body = { header: headerFor(call, this.tenant), capability, payload };
    return (await this.runtime.invoke(body, this.context(call), capability)).payload;
  }

  stream(capability: string, payload: JsonObject, call: McpCall, onFrame: FrameListener): Promise<JsonObject> {
    const body = { header: headerFor(call, this.tenant), capability, payload, stream_preference: "server_stream" };
    return new Promise<JsonObject>((resolve, reject) => {
      let session: StreamSession | undefined;
      const cancel = () => session?.cancel(String(call.signal?.reason ?? "the MCP caller cancelled the call"));
      const sink: FrameSink = {
        write(frame, written) {
          if (!frame.end_stream) {
            // The frame's credit comes back once its notification is sent: a slow MCP client slows the provider.
            Promise.resolve(onFrame(frame.payload ?? {})).then(written, (err) => {
              written();
              session?.fail(err instanceof MigError ? err : new MigError("MIG_INTERNAL", String(err)));
            });
            return;
          }
          written();
          call.signal?.removeEventListener("abort", cancel);
          const error = terminalError(frame);
          if (error) reject(error);
          else resolve(frame.payload ?? {});
        },
      };
      try {
        session = this.runtime.openStream(body, this.context(call), { sink, capability, clientFrames: false });
      } catch (err) {
        reject(err);
        return;
      }
      if (call.signal?.aborted) cancel();
      else call.signal?.addEventListener("abort", cancel, { once: true });
    });
  }

  async refuse(error: MigError, call: McpCall, target: string): Promise<void> {
    const audited = { body: { header: headerFor(call, this.tenant) }, request: this.context(call), target };
    await this.runtime
      .guard(
        "mcp",
        () => {
          throw error;
        },
        audited,
      )
      .catch(() => undefined);
  }

  async cancel(messageId: string, reason: string, call: McpCall): Promise<void> {
    const body = { header: headerFor(call, this.tenant), target_message_id: messageId, reason };
    await this.runtime.cancel(body, this.context(call), messageId);
  }

  inFlight(messageId: string): boolean {
    return this.runtime.work.has(messageId);
  }
}

/** The MigError a terminal frame carries: an error frame's, or the cancellation a cancel control frame reports. */
function terminalError(frame: StreamFrame): MigError | undefined {
  if (frame.kind === "error") return MigError.fromBody(frame.error ?? {});
  if (frame.kind === "control") {
    const reason = typeof frame.payload?.reason === "string" ? frame.payload.reason : "";
    return new MigError("MIG_TIMEOUT", `the stream was cancelled${reason ? `: ${reason}` : ""}`, {
      retryable: false,
      details: { cancelled: true, reason },
    });
  }
  return undefined;
}
