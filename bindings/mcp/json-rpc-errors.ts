// MIG errors as MCP sees them: the standard's MIG → JSON-RPC code table, and which failures are a tool's own
// (an `isError: true` result the model reads) rather than a JSON-RPC error of the call.
import { ProtocolError } from "@modelcontextprotocol/server";
import { type MigError, type MigErrorCode, toMigError } from "../../schemas/errors.ts";

/** docs/interop/MCP-MIG-MAPPING.md §8.1 of the standard. */
export const JSON_RPC_CODE: Record<MigErrorCode, number> = {
  MIG_INVALID_REQUEST: -32600,
  MIG_NOT_FOUND: -32601,
  MIG_UNAUTHORIZED: -32001,
  MIG_FORBIDDEN: -32003,
  MIG_TIMEOUT: -32008,
  MIG_RATE_LIMITED: -32009,
  MIG_BACKPRESSURE: -32010,
  MIG_UNAVAILABLE: -32011,
  MIG_INTERNAL: -32603,
  MIG_VERSION_MISMATCH: -32012,
  MIG_UNSUPPORTED_CAPABILITY: -32601,
};

/** JSON-RPC's own codes, for what goes wrong before a MIG operation is reached. */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

/** The `data` of every JSON-RPC error this server sends for a MIG error. */
export interface MigErrorData {
  mig_code: MigErrorCode;
  retryable: boolean;
  details?: Record<string, unknown>;
}

export function errorData(error: MigError): MigErrorData {
  const data: MigErrorData = { mig_code: error.code, retryable: error.retryable };
  if (error.details !== undefined) data.details = error.details;
  return data;
}

/** A MIG error as the JSON-RPC error of the call (thrown from a request handler, the SDK writes it). */
export function protocolError(err: unknown): ProtocolError {
  const error = toMigError(err);
  return new ProtocolError(JSON_RPC_CODE[error.code], error.message, errorData(error));
}

/** A JSON-RPC error response written directly (before the SDK sees the request: auth, body limits). */
export function errorResponse(id: string | number | null, code: number, message: string, data?: unknown): object {
  return { jsonrpc: "2.0", id, error: data === undefined ? { code, message } : { code, message, data } };
}

/**
 * Whether a failure is the tool's, for the model to see and act on (MCP: "tool execution errors"), rather than the
 * call's: the provider failed or returned what its schema refuses (MIG_INTERNAL), the call ran out of time or was
 * cancelled (MIG_TIMEOUT), the provider could not be reached (MIG_UNAVAILABLE), or the arguments do not match the
 * tool's input schema (as MCP 2025-11-25 asks, so that the model can correct them). Refusals of the caller itself
 * (auth, scopes, quotas, load, unknown names, malformed requests) stay JSON-RPC errors.
 */
export function isToolError(error: MigError): boolean {
  if (error.code === "MIG_INTERNAL" || error.code === "MIG_TIMEOUT" || error.code === "MIG_UNAVAILABLE") return true;
  return error.code === "MIG_INVALID_REQUEST" && typeof error.details?.schema_uri === "string";
}

/** MCP's own code for an unknown tool or prompt name (2025-11-25: "Invalid params"), also the SDK's for resources. */
export const INVALID_PARAMS = -32602;

/**
 * The answer for a name MCP does not know: the same for a name no rule gives, a capability not served and one the
 * caller's scopes hide, so that it never tells whether the capability exists. MCP defines the code (-32602); `data`
 * says in MIG's terms what it means.
 */
export function unknownName(what: "tool" | "prompt", name: string): ProtocolError {
  const list = what === "tool" ? "tools/list" : "prompts/list";
  return new ProtocolError(
    INVALID_PARAMS,
    `unknown ${what}: ${name.slice(0, 200)}; ${list} lists the ones you can use`,
    {
      mig_code: "MIG_UNSUPPORTED_CAPABILITY",
      retryable: false,
    } satisfies MigErrorData,
  );
}
