// The MCP server's MIG side for `mig mcp --stdio`: a MigClient (client/), so that the MCP server can stand in front of
// any MIG endpoint, over HTTP, NATS or gRPC, with the caller's own token.
import { type McpBackend, type McpCall, mcpMeta } from "../bindings/mcp/backend.ts";
import type { MigClient } from "../client/index.ts";
import type { CapabilityDescriptor, HelloResponse, JsonObject } from "../schemas/types.ts";

/** How long a schema URI that no endpoint answer named stays unknown before the schemas are read again. */
const SCHEMA_REFRESH_MS = 30_000;

export interface ClientBackendOptions {
  /** The endpoint's URL: an http(s) endpoint may show schema bodies at /admin/v0.1/capabilities. */
  url: string;
  token?: string | undefined;
  tenant?: string | undefined;
  /** Where a note about something that did not work goes (standard error: standard output is the MCP wire). */
  log: (message: string) => void;
}

export class ClientBackend implements McpBackend {
  private schemas = new Map<string, JsonObject>();
  private schemasReadAt = 0;
  private reading: Promise<void> | undefined;
  private schemaNote = false;

  constructor(
    private readonly client: MigClient,
    private readonly options: ClientBackendOptions,
  ) {}

  private callOptions(call: McpCall) {
    return {
      meta: mcpMeta(call),
      ...(call.messageId === undefined ? {} : { messageId: call.messageId }),
      ...(call.traceparent === undefined ? {} : { traceparent: call.traceparent }),
      ...(call.deadlineMs === undefined ? {} : { deadlineMs: call.deadlineMs }),
      ...(call.signal === undefined ? {} : { signal: call.signal }),
    };
  }

  hello(call: McpCall): Promise<HelloResponse> {
    return this.client.hello(this.callOptions(call));
  }

  async discover(call: McpCall): Promise<Partial<CapabilityDescriptor>[]> {
    return (await this.client.discover(this.callOptions(call))).capabilities;
  }

  async describe(capability: string, call: McpCall): Promise<Partial<CapabilityDescriptor> | undefined> {
    const { capabilities } = await this.client.discover({ ...this.callOptions(call), query: capability });
    return capabilities.find((descriptor) => descriptor.id === capability);
  }

  async invoke(capability: string, payload: JsonObject, call: McpCall): Promise<JsonObject> {
    const stop = this.cancelOnAbort(call);
    try {
      return (await this.client.invoke(capability, payload, this.callOptions(call))).payload;
    } finally {
      stop();
    }
  }

  async stream(
    capability: string,
    payload: JsonObject,
    call: McpCall,
    onFrame: (payload: JsonObject) => Promise<void> | void,
  ): Promise<JsonObject> {
    // The stream cancels itself on the signal (MigStream); its frames are forwarded at the MCP client's pace.
    const stream = this.client.stream(capability, payload, { ...this.callOptions(call), mode: "server_stream" });
    for await (const frame of stream) await onFrame(frame.payload ?? {});
    return stream.result;
  }

  async cancel(messageId: string, reason: string): Promise<void> {
    await this.client.cancel(messageId, { reason });
  }

  /**
   * An aborted unary call also gets a CANCEL: closing an HTTP request cancels it on the endpoint, but a NATS or
   * gRPC request leaves nothing behind to close.
   */
  private cancelOnAbort(call: McpCall): () => void {
    const { signal, messageId } = call;
    if (!signal || messageId === undefined) return () => undefined;
    const cancel = () => {
      this.client
        .cancel(messageId, { reason: String(signal.reason ?? "the MCP client cancelled the call") })
        .catch((err: unknown) => this.options.log(`CANCEL of ${messageId} failed: ${(err as Error).message}`));
    };
    signal.addEventListener("abort", cancel, { once: true });
    return () => signal.removeEventListener("abort", cancel);
  }

  /**
   * Schema bodies, from an http(s) endpoint's /admin/v0.1/capabilities when the token may read it (auth mode none,
   * or the admin scope). Elsewhere tools get an open object schema and no output schema: the endpoint still
   * validates every payload.
   */
  async schema(uri: string): Promise<JsonObject | undefined> {
    if (!this.schemas.has(uri) && Date.now() - this.schemasReadAt > SCHEMA_REFRESH_MS) {
      this.reading ??= this.readSchemas().finally(() => {
        this.reading = undefined;
      });
      await this.reading;
    }
    return this.schemas.get(uri);
  }

  private async readSchemas(): Promise<void> {
    this.schemasReadAt = Date.now();
    const url = new URL(this.options.url);
    if (url.protocol !== "http:" && url.protocol !== "https:") return;
    const headers: Record<string, string> = {};
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (this.options.tenant) headers["x-tenant-id"] = this.options.tenant;
    try {
      const res = await fetch(new URL("/admin/v0.1/capabilities", url), {
        headers,
        signal: AbortSignal.timeout(10_000),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = (await res.json()) as { schemas?: { uri: string; schema: JsonObject }[] };
      for (const { uri, schema } of body.schemas ?? []) this.schemas.set(uri, schema);
    } catch (err) {
      if (!this.schemaNote) {
        this.schemaNote = true;
        this.options.log(
          `tools get open input schemas: ${url.origin}/admin/v0.1/capabilities did not show the schemas (${(err as Error).message}); the endpoint still checks every payload`,
        );
      }
    }
  }
}
