// What a binding knows about a request besides its body: who sent it, over which transport, and whether the
// caller still waits. Every operation takes one.

import type { Span } from "@opentelemetry/api";
import type { MigError } from "../../schemas/errors.ts";
import type { BindingType } from "../../schemas/types.ts";
import type { Principal } from "./principal.ts";

/** The MCP call a request was made for (bindings/mcp), kept in the request's audit record. */
export interface McpMapping {
  /** The MCP method, e.g. `tools/call`. */
  method: string;
  /** The tool or prompt name, or the resource URI, the call named. */
  name?: string | undefined;
  /** The JSON-RPC request id, as text. */
  request_id?: string | undefined;
}

/**
 * Tells the runtime that a request's caller has gone. An AbortSignal is one; a binding may give something lighter,
 * since making an AbortSignal and listening on it costs every request a few microseconds (caller-gone.ts).
 */
export interface GoneSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** What a binding knows about a request besides its body. */
export interface RequestContext {
  principal: Principal;
  /** A tenant named by the transport itself (X-Tenant-ID, subject token, metadata), if any. */
  tenant?: string | undefined;
  binding: BindingType;
  /** Size of the request body on the wire, when the binding knows it. */
  bodyBytes?: number;
  /** When the transport stops waiting for the answer (epoch ms), e.g. a gRPC call's deadline. */
  deadlineAt?: number | undefined;
  /**
   * Aborts when the caller has gone (its connection closed, its call cancelled): a unary invocation is then
   * cancelled with the signal's reason, its provider's signal fires and its capacity is freed.
   */
  gone?: GoneSignal | undefined;
  /** Set by the policy once the request passed authorization (for the audit record's decision). */
  authorized?: boolean;
  /**
   * A refusal the caller is not told of: the answer is the one for a target that does not exist, so
   * that a caller cannot probe another tenant's live ids. Kept here for the audit record.
   */
  hiddenDenial?: MigError;
  /** The operation's span, when tracing is on (runtime/ops/operation-span.ts): the parent of the spans it leads to. */
  span?: Span | undefined;
  /** Set when the request serves an MCP call: which one, for the audit record. */
  mcp?: McpMapping | undefined;
}
