// What a check works with: the endpoints, the request header it sends, envelope validation, and a record of every answer.

import { randomUUID } from "node:crypto";
import { brief, ensure, fail, isRecord, skip } from "./assert.ts";
import { GrpcClient } from "./grpc-client.ts";
import { type HttpAnswer, HttpClient, type HttpRequestOptions } from "./http-client.ts";
import { McpClient } from "./mcp-client.ts";
import { type NatsAnswer, NatsClient, type NatsSubscription } from "./nats-client.ts";
import type { Binding, EnvelopeName, ValidateEnvelope } from "./types.ts";
import { WsSession } from "./ws-client.ts";

/** One body the endpoint sent during the run, kept for the checks that look across all answers. */
export interface Exchange {
  checkId: string;
  binding: Binding;
  /** "POST /mig/v0.1/invoke/x", "SSE /mig/v0.1/subscribe/t", "WS frame", "NATS mig.v0_1.acme.hello". */
  op: string;
  /** HTTP status, when the answer was an HTTP response. */
  status?: number;
  contentType?: string;
  text?: string;
  body: unknown;
  /** False when the request deliberately carried no tenant. */
  tenantExpected: boolean;
}

export interface ContextSettings {
  http?: string;
  nats?: string;
  grpc?: string;
  mcp?: string;
  tenant: string;
  token?: string;
  limitedToken?: string;
  timeoutMs: number;
  validator?: ValidateEnvelope;
  validatorError?: string;
}

export interface ExpectedError {
  /** Acceptable MIG codes. */
  codes: readonly string[];
  /** Acceptable HTTP statuses; default: any 4xx or 5xx (the standard's OpenAPI names no status per code). */
  statuses?: readonly number[];
}

export class CheckContext {
  readonly tenant: string;
  readonly token: string | undefined;
  /** A second token of the tenant, lacking a scope (CORE-2.http.discover-scoped). */
  readonly limitedToken: string | undefined;
  readonly timeoutMs: number;
  /** Short random id that keeps this run's topics and keys apart from other runs. */
  readonly runId = randomUUID().slice(0, 8);
  readonly exchanges: Exchange[] = [];
  readonly validator: ValidateEnvelope | undefined;
  readonly validatorError: string | undefined;
  /** Id of the check being run; set by the harness. */
  checkId = "";

  private readonly httpClient: HttpClient | undefined;
  private readonly natsUrl: string | undefined;
  private readonly grpcClient: GrpcClient | undefined;
  private readonly mcpClient: McpClient | undefined;
  private natsClient: Promise<NatsClient> | undefined;
  private readonly sessions = new Set<{ close(): void }>();
  private readonly memos = new Map<string, Promise<unknown>>();

  constructor(settings: ContextSettings) {
    this.tenant = settings.tenant;
    this.token = settings.token;
    this.limitedToken = settings.limitedToken;
    this.timeoutMs = settings.timeoutMs;
    this.validator = settings.validator;
    this.validatorError = settings.validatorError;
    this.natsUrl = settings.nats;
    if (settings.grpc)
      this.grpcClient = new GrpcClient(settings.grpc, settings.tenant, settings.token, settings.timeoutMs);
    if (settings.mcp) this.mcpClient = new McpClient(settings.mcp, settings.tenant, settings.token, settings.timeoutMs);
    if (settings.http)
      this.httpClient = new HttpClient(settings.http, settings.tenant, settings.token, settings.timeoutMs);
  }

  /** A complete MIG header for this tenant; `extra` adds or overrides fields. */
  header(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      mig_version: "0.1",
      message_id: randomUUID(),
      timestamp: new Date().toISOString(),
      tenant_id: this.tenant,
      ...extra,
    };
  }

  /** Whether an HTTP endpoint was given (checks of other wires may cross-check with it, or do without). */
  get hasHttp(): boolean {
    return this.httpClient !== undefined;
  }

  get http(): HttpClient {
    if (!this.httpClient) skip("no --http endpoint given");
    return this.httpClient;
  }

  /** POSTs JSON and records the answer. */
  async post(
    path: string,
    body: unknown,
    options: HttpRequestOptions & { tenantExpected?: boolean } = {},
  ): Promise<HttpAnswer> {
    const answer = await this.http.post(path, body, options);
    this.recordHttp(answer, options.tenantExpected ?? true);
    return answer;
  }

  /** Sends an exact body text (for malformed JSON) and records the answer; its header need not name the tenant. */
  async postRaw(path: string, raw: string): Promise<HttpAnswer> {
    const answer = await this.http.request("POST", path, { raw });
    this.recordHttp(answer, false);
    return answer;
  }

  async get(path: string, options: HttpRequestOptions = {}): Promise<HttpAnswer> {
    return this.http.request("GET", path, options);
  }

  /** Opens an SSE subscription that is closed when the run ends. */
  subscribe(path: string): ReturnType<HttpClient["subscribe"]> {
    const subscription = this.http.subscribe(path);
    this.sessions.add(subscription);
    return subscription;
  }

  /** POSTs JSON asking for an SSE answer (a streamed INVOKE); closed when the run ends. */
  postStream(path: string, body: unknown): ReturnType<HttpClient["postStream"]> {
    const stream = this.http.postStream(path, body);
    this.sessions.add(stream);
    return stream;
  }

  /** Opens a WebSocket on `path` that is closed when the run ends. */
  async websocket(path: string): Promise<WsSession> {
    const http = this.http;
    const session = await WsSession.open(http.baseUrl + path, http.headersFor({}), this.timeoutMs);
    this.sessions.add(session);
    return session;
  }

  get grpc(): GrpcClient {
    if (!this.grpcClient) skip("no --grpc address given");
    return this.grpcClient;
  }

  /** The MCP endpoint's client: a session per token, opened on first use. */
  get mcp(): McpClient {
    if (!this.mcpClient) skip("no MCP endpoint given (mcp+http://…)");
    return this.mcpClient;
  }

  async nats(): Promise<NatsClient> {
    if (!this.natsUrl) skip("no --nats URL given");
    this.natsClient ??= NatsClient.connect(this.natsUrl, this.token, this.timeoutMs);
    return this.natsClient;
  }

  /** Subscribes to a NATS subject, registered at the server when this resolves; closed when the run ends. */
  async natsSubscribe(subject: string): Promise<NatsSubscription> {
    const client = await this.nats();
    const subscription = client.subscribe(subject);
    this.sessions.add(subscription);
    await client.flush();
    return subscription;
  }

  /** The same promise for every call with `key` in this run: one DISCOVER answers every check that needs a fixture. */
  memo<T>(key: string, make: () => Promise<T>): Promise<T> {
    let value = this.memos.get(key) as Promise<T> | undefined;
    if (!value) {
      value = make();
      this.memos.set(key, value);
    }
    return value;
  }

  /** Sends a NATS request and records the reply. */
  async natsRequest(subject: string, body: Record<string, unknown>): Promise<NatsAnswer> {
    const answer = await (await this.nats()).request(subject, body);
    this.exchanges.push({
      checkId: this.checkId,
      binding: "nats",
      op: `NATS ${subject}`,
      text: answer.text,
      body: answer.body,
      tenantExpected: true,
    });
    return answer;
  }

  /** Records a body that arrived outside a request/response (an SSE event, a WebSocket frame). */
  record(binding: Binding, op: string, body: unknown): void {
    this.exchanges.push({ checkId: this.checkId, binding, op, body, tenantExpected: true });
  }

  /** Fails unless `value` is a valid `name` envelope; a no-op when no validator is loaded (reported by its own check). */
  validate(name: EnvelopeName, value: unknown, where = ""): void {
    if (!this.validator) return;
    const result = this.validator(name, value);
    if (!result.ok) fail(`${where ? `${where}: ` : ""}not a valid ${name}: ${result.errors.slice(0, 3).join("; ")}`);
  }

  /** The body of a 200 answer that is a valid `envelope`; fails on anything else. */
  expectSuccess(answer: HttpAnswer, envelope: EnvelopeName): Record<string, unknown> {
    if (answer.status !== 200) fail(`${answer.op} answered ${answer.status}: ${brief(answer.text)}`);
    const body = answer.body;
    if (!isRecord(body)) fail(`${answer.op} answered 200 with a body that is not a JSON object: ${brief(answer.text)}`);
    if ("error" in body) fail(`${answer.op} answered 200 with an error: ${brief(body.error)}`);
    this.validate(envelope, body, answer.op);
    return body;
  }

  /** The `error` of a {header, error} answer whose code and HTTP status are as expected. */
  expectError(answer: HttpAnswer, expected: ExpectedError): Record<string, unknown> {
    const body = answer.body;
    if (!isRecord(body) || !isRecord(body.error) || !isRecord(body.header)) {
      fail(
        `${answer.op} answered ${answer.status} ${answer.contentType || "(no content-type)"} ` +
          `instead of a {header, error} envelope: ${brief(answer.text)}`,
      );
    }
    const code = body.error.code;
    ensure(
      typeof code === "string" && expected.codes.includes(code),
      `${answer.op} answered error code ${brief(code)}; expected ${expected.codes.join(" or ")}`,
    );
    // The standard's OpenAPI answers errors with "4XX" or "5XX"; the status per code is the reference's table,
    // checked apart by the convention check CORE-5.http.status-table.
    if (expected.statuses) {
      ensure(
        expected.statuses.includes(answer.status),
        `${answer.op} answered ${code} with HTTP ${answer.status}; expected ${expected.statuses.join(" or ")}`,
      );
    } else {
      ensure(
        answer.status >= 400 && answer.status <= 599,
        `${answer.op} answered ${code} with HTTP ${answer.status}, which is not an error status (4xx or 5xx)`,
      );
    }
    this.validate("ErrorEnvelope", body, answer.op);
    return body.error;
  }

  /** Closes every SSE stream, WebSocket and NATS connection the run opened. */
  async close(): Promise<void> {
    for (const session of this.sessions) session.close();
    this.sessions.clear();
    this.grpcClient?.close();
    if (this.natsClient) {
      const client = await this.natsClient.catch(() => undefined);
      await client?.close().catch(() => undefined);
    }
  }

  private recordHttp(answer: HttpAnswer, tenantExpected: boolean): void {
    this.exchanges.push({
      checkId: this.checkId,
      binding: "http",
      op: answer.op,
      status: answer.status,
      contentType: answer.contentType,
      text: answer.text,
      body: answer.body,
      tenantExpected,
    });
  }
}
