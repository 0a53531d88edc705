// MCP failures as MIG errors: JSON-RPC errors by the reverse of the standard's MIG → JSON-RPC table, the MCP SDK's
// own failures (connection lost, HTTP refusals, an answer that is not MCP) and tool results flagged `isError`. The
// original error always travels in `details`, so nothing the server said is lost.
import {
  ProtocolError,
  ResourceNotFoundError,
  SdkError,
  SdkErrorCode,
  SdkHttpError,
} from "@modelcontextprotocol/client";
import { MigError, type MigErrorCode } from "../../schemas/errors.ts";

/**
 * JSON-RPC codes with a MIG meaning: the standard's table read backwards (MCP-MIG mapping §8), plus MCP's own
 * codes where they say more than "server error" (a missing resource, a client capability the adapter lacks).
 */
const FROM_JSON_RPC: Record<number, MigErrorCode> = {
  [-32700]: "MIG_INTERNAL", // the server could not parse what the adapter sent
  [-32600]: "MIG_INVALID_REQUEST",
  [-32601]: "MIG_NOT_FOUND",
  [-32602]: "MIG_INVALID_REQUEST",
  [-32603]: "MIG_INTERNAL",
  [-32001]: "MIG_UNAUTHORIZED",
  [-32002]: "MIG_NOT_FOUND", // MCP: resource not found
  [-32003]: "MIG_FORBIDDEN",
  [-32008]: "MIG_TIMEOUT",
  [-32009]: "MIG_RATE_LIMITED",
  [-32010]: "MIG_BACKPRESSURE",
  [-32011]: "MIG_UNAVAILABLE",
  [-32012]: "MIG_VERSION_MISMATCH",
  [-32021]: "MIG_UNSUPPORTED_CAPABILITY", // MCP: needs a client capability (sampling, elicitation) MIG callers lack
  [-32022]: "MIG_VERSION_MISMATCH", // MCP: unsupported protocol version
  [-32042]: "MIG_UNSUPPORTED_CAPABILITY", // MCP: URL elicitation required
};

/** The MIG code of a JSON-RPC error code; other server errors (-32000 to -32099) are MIG_UNAVAILABLE, the rest internal. */
export function migCodeOfJsonRpc(code: number): MigErrorCode {
  const known = FROM_JSON_RPC[code];
  if (known) return known;
  return code <= -32000 && code >= -32099 ? "MIG_UNAVAILABLE" : "MIG_INTERNAL";
}

/** Messages from a server are shown to MIG callers: bounded, so a server cannot fill an envelope with one. */
const MAX_MESSAGE = 500;
const bounded = (text: string) => (text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text);

/** What a failed MCP request is about, for the message and the details. */
export interface McpRequestOrigin {
  upstream: string;
  /** `tools/call of get-sum`, `tasks/get of task 4f…`. */
  what: string;
}

/**
 * The MigError of anything an MCP request threw. A MigError passes as it is (a lost connection, the caller's
 * cancel); a JSON-RPC error maps by code; the SDK's failures by kind.
 */
export function migErrorOf(err: unknown, origin: McpRequestOrigin): MigError {
  if (err instanceof MigError) return err;
  const { upstream, what } = origin;
  if (ProtocolError.isInstance(err)) {
    const jsonRpc = { code: err.code, message: err.message, ...(err.data === undefined ? {} : { data: err.data }) };
    // A resource miss is -32602 on the wire; the SDK tells it from other invalid params by its `data: {uri}`.
    const code = ResourceNotFoundError.isInstance(err) ? "MIG_NOT_FOUND" : migCodeOfJsonRpc(err.code);
    return new MigError(code, bounded(`MCP server ${upstream} refused ${what}: ${err.message}`), {
      details: { upstream, jsonrpc_error: jsonRpc },
      cause: err,
    });
  }
  if (SdkError.isInstance(err)) {
    const sdk = { code: err.code, message: bounded(err.message) };
    const status = SdkHttpError.isInstance(err) ? err.status : undefined;
    const details = { upstream, sdk_error: status === undefined ? sdk : { ...sdk, http_status: status } };
    switch (err.code) {
      case SdkErrorCode.ConnectionClosed:
      case SdkErrorCode.NotConnected:
      case SdkErrorCode.SendFailed:
        return new MigError("MIG_UNAVAILABLE", `MCP server ${upstream} went away during ${what}; try again`, {
          details,
          cause: err,
        });
      case SdkErrorCode.RequestTimeout:
        return new MigError("MIG_TIMEOUT", `MCP server ${upstream} did not answer ${what} in time`, {
          details,
          cause: err,
        });
      case SdkErrorCode.InvalidResult:
        return new MigError(
          "MIG_INTERNAL",
          bounded(`MCP server ${upstream} answered ${what} with a result that is not MCP: ${err.message}`),
          {
            details,
            cause: err,
          },
        );
      case SdkErrorCode.ClientHttpAuthentication:
      case SdkErrorCode.ClientHttpForbidden:
        // The worker's own credentials for the server: no caller can fix that by trying again.
        return new MigError("MIG_UNAVAILABLE", `MCP server ${upstream} refused the worker's credentials (${what})`, {
          retryable: false,
          details,
          cause: err,
        });
      default:
        return new MigError(
          status === undefined ? "MIG_INTERNAL" : "MIG_UNAVAILABLE",
          bounded(`MCP server ${upstream} failed ${what}: ${err.message}`),
          { details, cause: err },
        );
    }
  }
  if (isNetworkFailure(err)) {
    return new MigError("MIG_UNAVAILABLE", `MCP server ${upstream} cannot be reached (${what}); try again`, {
      details: { upstream, network_error: bounded(networkMessage(err)) },
      cause: err,
    });
  }
  return new MigError(
    "MIG_INTERNAL",
    bounded(`MCP server ${upstream} failed ${what}: ${String((err as Error)?.message ?? err)}`),
    {
      details: { upstream },
      cause: err,
    },
  );
}

/**
 * Whether a failure says the connection itself is in doubt (rather than this one request): the connection is then
 * checked, and rebuilt when it is gone. `fetch` reports a refused or reset socket as a TypeError.
 */
export function putsConnectionInDoubt(err: unknown): boolean {
  if (SdkError.isInstance(err)) {
    if (err.code === SdkErrorCode.ConnectionClosed || err.code === SdkErrorCode.NotConnected) return true;
    if (err.code === SdkErrorCode.SendFailed) return true;
    // An HTTP server that lost the session (restarted) answers 404, or 400 from servers that predate that rule.
    return SdkHttpError.isInstance(err) && (err.status === 404 || err.status === 400 || err.status >= 500);
  }
  return isNetworkFailure(err);
}

function isNetworkFailure(err: unknown): boolean {
  return err instanceof TypeError && (err as { cause?: unknown }).cause !== undefined;
}

function networkMessage(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  return `${(err as Error).message}${cause?.code ? ` (${String(cause.code)})` : ""}`;
}

/**
 * The MigError of a tool result flagged `isError`: the tool ran and reported a failure. Servers built on the MCP
 * SDKs report a protocol failure inside a call (an unknown tool, arguments their own schema refuses) as such a
 * result whose text starts `MCP error <code>:`; that code maps like a JSON-RPC error. Any other failure is the
 * tool's own: MIG_INTERNAL, not retryable, with the tool's text as the message.
 */
export function migErrorOfToolResult(
  result: { content?: unknown; structuredContent?: unknown },
  origin: McpRequestOrigin,
): MigError {
  const content = Array.isArray(result.content) ? (result.content as { type?: unknown; text?: unknown }[]) : [];
  const text = content
    .filter((block) => block?.type === "text" && typeof block.text === "string")
    .map((block) => block.text as string)
    .join("\n");
  const sdkCode = /^MCP error (-?\d+):/.exec(text)?.[1];
  const code: MigErrorCode = sdkCode === undefined ? "MIG_INTERNAL" : migCodeOfJsonRpc(Number(sdkCode));
  const reported = text === "" ? "an error without text" : text;
  const details: Record<string, unknown> = { upstream: origin.upstream, tool_error: { content: result.content ?? [] } };
  if (result.structuredContent !== undefined)
    (details.tool_error as Record<string, unknown>).structuredContent = result.structuredContent;
  return new MigError(code, bounded(`MCP server ${origin.upstream} reported ${origin.what} failed: ${reported}`), {
    retryable: code === "MIG_INTERNAL" ? false : undefined,
    details,
  });
}
