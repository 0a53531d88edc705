// A small MCP client over Streamable HTTP for the MCP checks: JSON-RPC POSTs, answers read as JSON or as an SSE
// stream (notifications kept, up to the response), one session per token opened with MCP 2025-11-25's handshake.

import { brief, fail, isRecord } from "./assert.ts";
import { describeFetchError, parseSseBlock } from "./http-client.ts";

/** The protocol revision the harness asks for: the one whose cancellation is `notifications/cancelled`. */
export const MCP_PROTOCOL_VERSION = "2025-11-25";

export interface McpAnswer {
  /** "tools/call observatory.models.infer", for reason lines. */
  op: string;
  status: number;
  contentType: string;
  /** The JSON-RPC response to the request, when one came. */
  response?: Record<string, unknown>;
  /** Notifications (and server requests) that came on the request's stream before its response. */
  notifications: Record<string, unknown>[];
  /** The body as read, for reason lines (an SSE stream's data lines, a JSON body, or other text). */
  text: string;
  sessionId?: string | undefined;
}

export interface McpRequestOptions {
  /** The JSON-RPC id; one is made when absent. */
  id?: string | number;
  /** A bearer token to send instead of the configured one. */
  token?: string;
  /** Ends the request early (the answer then has no response). */
  signal?: AbortSignal;
  /** Bound on the whole exchange (default: the harness's timeout). */
  timeoutMs?: number;
}

/** What the handshake established for one token: the revision the server chose, its session id, its answer. */
export interface McpSession {
  token: string | undefined;
  protocolVersion: string;
  sessionId: string | undefined;
  initialize: McpAnswer;
  /** The status of the POST of notifications/initialized. */
  initializedStatus: number;
  initializedText: string;
}

export class McpClient {
  private nextId = 1;
  private readonly sessions = new Map<string, Promise<McpSession>>();

  constructor(
    readonly url: string,
    private readonly tenant: string,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {}

  /** The session of `token` (default: the configured one), opened once: initialize, then notifications/initialized. */
  session(token = this.token): Promise<McpSession> {
    const key = token ?? "";
    let session = this.sessions.get(key);
    if (!session) {
      session = this.open(token);
      this.sessions.set(key, session);
      // A failed handshake is reported by every check that needs it, not remembered as the session.
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  private async open(token: string | undefined): Promise<McpSession> {
    const initialize = await this.post(
      "initialize",
      {
        jsonrpc: "2.0",
        id: this.nextId++,
        method: "initialize",
        params: {
          protocolVersion: MCP_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: "mig-conformance", version: "0.1.0" },
        },
      },
      { token },
    );
    const result = resultOf(initialize);
    const protocolVersion = typeof result.protocolVersion === "string" ? result.protocolVersion : MCP_PROTOCOL_VERSION;
    const base = { token, protocolVersion, sessionId: initialize.sessionId, initialize };
    const initialized = await this.notify(base, "notifications/initialized", {});
    return { ...base, initializedStatus: initialized.status, initializedText: initialized.text };
  }

  /** A request in the session of `options.token`; the answer as it came (a JSON-RPC error is not a failure here). */
  async request(
    method: string,
    params: Record<string, unknown>,
    options: McpRequestOptions = {},
  ): Promise<McpAnswer & { id: string | number }> {
    const session = await this.session(options.token ?? this.token);
    const id = options.id ?? this.nextId++;
    const name = typeof params.name === "string" ? ` ${params.name}` : "";
    const answer = await this.post(`${method}${name}`, { jsonrpc: "2.0", id, method, params }, options, session);
    return { ...answer, id };
  }

  /** A notification in the session of `token`; its HTTP status and body. */
  async notify(
    session: Pick<McpSession, "token" | "protocolVersion" | "sessionId">,
    method: string,
    params: Record<string, unknown>,
  ): Promise<{ status: number; text: string }> {
    const op = `POST ${method}`;
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: this.headersFor(session.token, session),
        body: JSON.stringify({ jsonrpc: "2.0", method, params }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      return { status: response.status, text: await response.text() };
    } catch (err) {
      fail(`${op}: ${describeFetchError(err, this.timeoutMs)}`);
    }
  }

  private headersFor(
    token: string | undefined,
    session?: Pick<McpSession, "protocolVersion" | "sessionId">,
  ): Record<string, string> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "x-tenant-id": this.tenant,
    };
    if (token) headers.authorization = `Bearer ${token}`;
    if (session) headers["mcp-protocol-version"] = session.protocolVersion;
    if (session?.sessionId) headers["mcp-session-id"] = session.sessionId;
    return headers;
  }

  private async post(
    op: string,
    message: { id: string | number } & Record<string, unknown>,
    options: McpRequestOptions,
    session?: McpSession,
  ): Promise<McpAnswer> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (options.signal) signals.push(options.signal);
    const signal = AbortSignal.any(signals);
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: "POST",
        headers: this.headersFor(options.token ?? session?.token ?? this.token, session),
        body: JSON.stringify(message),
        signal,
      });
    } catch (err) {
      if (options.signal?.aborted) return { op, status: 0, contentType: "", notifications: [], text: "" };
      fail(`${op}: ${describeFetchError(err, timeoutMs)}`);
    }
    const contentType = response.headers.get("content-type") ?? "";
    const answer: McpAnswer = {
      op,
      status: response.status,
      contentType,
      notifications: [],
      text: "",
      sessionId: response.headers.get("mcp-session-id") ?? session?.sessionId,
    };
    try {
      if (contentType.startsWith("text/event-stream") && response.body) {
        await readStream(response.body, message.id, answer);
      } else {
        answer.text = await response.text();
        const body = parseJson(answer.text);
        if (isRecord(body)) answer.response = body;
      }
    } catch (err) {
      // The caller's own abort ends the exchange without a response; a timeout is the endpoint's failure.
      if (!options.signal?.aborted) fail(`${op}: ${describeFetchError(err, timeoutMs)}`);
    }
    return answer;
  }
}

/** Reads SSE events until the response to `id` (or the end of the stream), keeping what came before it. */
async function readStream(body: ReadableStream<Uint8Array>, id: string | number, answer: McpAnswer): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = "";
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut: number;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseSseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (!event) continue;
        answer.text += `${event.data}\n`;
        const message = parseJson(event.data);
        if (!isRecord(message)) continue;
        if (message.id === id && ("result" in message || "error" in message)) {
          answer.response = message;
          return;
        }
        answer.notifications.push(message);
      }
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The `result` of a successful JSON-RPC response; fails on anything else. */
export function resultOf(answer: McpAnswer): Record<string, unknown> {
  const response = answer.response;
  if (answer.status < 200 || answer.status > 299)
    fail(`${answer.op} answered HTTP ${answer.status}: ${brief(answer.text)}`);
  if (!response) fail(`${answer.op} answered no JSON-RPC response (${answer.contentType}): ${brief(answer.text)}`);
  if (isRecord(response.error)) fail(`${answer.op} answered the JSON-RPC error ${brief(response.error)}`);
  if (!isRecord(response.result)) fail(`${answer.op} answered no result object: ${brief(response)}`);
  return response.result;
}

/** The `error` of a JSON-RPC error response, or undefined when the answer was a result. */
export function rpcErrorOf(answer: McpAnswer): Record<string, unknown> | undefined {
  return isRecord(answer.response?.error) ? answer.response.error : undefined;
}
