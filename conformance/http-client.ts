// A small HTTP client for the MIG HTTP binding: JSON requests, raw bodies, and SSE subscriptions.

import { fail } from "./assert.ts";
import { Collector } from "./collector.ts";

export interface HttpAnswer {
  /** "POST /mig/v0.1/hello", for reason lines. */
  op: string;
  status: number;
  contentType: string;
  text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: unknown;
}

export interface HttpRequestOptions {
  /** JSON body to send. */
  body?: unknown;
  /** Exact body text to send instead of `body` (for malformed JSON). */
  raw?: string;
  /** Send `X-Tenant-ID` (default true). */
  tenantHeader?: boolean;
  /** Send `Authorization: Bearer <token>` when a token is configured (default true). */
  auth?: boolean;
  /** A bearer token to send instead of the configured one. */
  token?: string;
  headers?: Record<string, string>;
}

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export class HttpClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly tenant: string,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  headersFor(options: HttpRequestOptions): Record<string, string> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.body !== undefined || options.raw !== undefined) headers["content-type"] = "application/json";
    if (options.tenantHeader !== false) headers["x-tenant-id"] = this.tenant;
    const token = options.token ?? this.token;
    if (options.auth !== false && token) headers.authorization = `Bearer ${token}`;
    return { ...headers, ...options.headers };
  }

  async request(method: "GET" | "POST", path: string, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
    const op = `${method} ${path}`;
    const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers: this.headersFor(options),
        body: payload,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      fail(`${op}: ${describeFetchError(err, this.timeoutMs)}`);
    }
    let body: unknown;
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { op, status: response.status, contentType: response.headers.get("content-type") ?? "", text, body };
  }

  post(path: string, body: unknown, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
    return this.request("POST", path, { ...options, body });
  }

  /** Opens an SSE stream; events arrive in the returned subscription until `close()`. */
  subscribe(path: string, options: HttpRequestOptions = {}): SseSubscription {
    return new SseSubscription(this.baseUrl + path, {
      method: "GET",
      headers: { ...this.headersFor(options), accept: "text/event-stream" },
    });
  }

  /** POSTs JSON asking for an SSE answer (a streamed INVOKE); frames arrive in the returned subscription. */
  postStream(path: string, body: unknown, options: HttpRequestOptions = {}): SseSubscription {
    return new SseSubscription(this.baseUrl + path, {
      method: "POST",
      headers: { ...this.headersFor({ ...options, body }), accept: "text/event-stream, application/json" },
      body: JSON.stringify(body),
    });
  }
}

/** A running SSE request: its status once known, its events, and a way to stop it. */
export class SseSubscription {
  readonly events = new Collector<SseEvent>();
  status: number | undefined;
  /** The answer's content type, once known. */
  contentType: string | undefined;
  /** The body of a non-200 answer, or of a 200 answer that is not an event stream. */
  errorText: string | undefined;
  private readonly abort = new AbortController();

  constructor(url: string, init: { method: "GET" | "POST"; headers: Record<string, string>; body?: string }) {
    void this.read(url, init);
  }

  close(): void {
    this.abort.abort();
  }

  private async read(
    url: string,
    init: { method: "GET" | "POST"; headers: Record<string, string>; body?: string },
  ): Promise<void> {
    try {
      const response = await fetch(url, { ...init, signal: this.abort.signal });
      this.status = response.status;
      this.contentType = response.headers.get("content-type") ?? "";
      if (response.status !== 200 || !response.body || !this.contentType.startsWith("text/event-stream")) {
        this.errorText = await response.text();
        this.events.end(new Error(`answered ${response.status} ${this.contentType || "(no content-type)"}`));
        return;
      }
      const decoder = new TextDecoder();
      let buffer = "";
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true }).replace(/\r\n?/g, "\n");
        let cut: number;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = parseSseBlock(block);
          if (event) this.events.push(event);
        }
      }
      this.events.end(new Error("the server closed the stream"));
    } catch (err) {
      this.events.end(this.abort.signal.aborted ? undefined : new Error(describeFetchError(err, 0)));
    }
  }
}

export function parseSseBlock(block: string): SseEvent | undefined {
  let event = "message";
  let id: string | undefined;
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length === 0) return undefined;
  return { event, data: data.join("\n"), id };
}

export function describeFetchError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return `no answer within ${timeoutMs} ms`;
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) return `${err.message} (${cause.message})`;
    return err.message;
  }
  return String(err);
}
