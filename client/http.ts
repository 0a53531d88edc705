// The client's HTTP transport: JSON POSTs for the unary operations, one WebSocket per stream and Server-Sent Events
// for subscriptions (docs/bindings/http.md), each read from the wire only as fast as the caller consumes.
import type { IncomingMessage } from "node:http";
import WebSocket, { type RawData } from "ws";
import { MigError } from "../schemas/errors.ts";
import type {
  CancelAck,
  CancelRequest,
  DiscoverRequest,
  DiscoverResponse,
  EventMessage,
  HeartbeatAck,
  HeartbeatRequest,
  HelloRequest,
  HelloResponse,
  InvokeRequest,
  InvokeResponse,
  JsonObject,
  MessageHeader,
  PublishAck,
  PublishRequest,
  StreamFrame,
} from "../schemas/types.ts";
import { abortError, closedEarly, envelopeError, notMigAnswer, unreachable } from "./errors.ts";
import type {
  CallContext,
  Outbound,
  StreamChannel,
  StreamOpen,
  SubscribeOpen,
  SubscriptionChannel,
  SubscriptionInfo,
  Transport,
} from "./transport.ts";

const API = "mig/v0.1/";
/** Frames a stream holds received but unread before it stops reading its socket; it reads again at half. */
const STREAM_QUEUE = 32;
/** The most of a refusal's body that is read to find its error envelope. */
const ANSWER_SAMPLE_BYTES = 64 * 1024;
/** How long a closing WebSocket waits for the server's close frame before it drops the connection. */
const CLOSE_GRACE_MS = 1_000;
/** Statuses with which a proxy or load balancer says that the server behind it is down or restarting. */
const GATEWAY_STATUSES = new Set([502, 503, 504]);

/** Something the transport holds open and must release when it is closed. */
interface Held {
  drop(reason: MigError): void;
}

/** Reads one header of an answer, whichever HTTP library received it. */
type HeaderOf = (name: string) => string | null;

export function httpTransport(url: URL): Transport {
  return new HttpTransport(url);
}

class HttpTransport implements Transport {
  readonly kind = "http" as const;
  readonly url: string;
  /** The base URL with its path as a directory (a gateway's prefix such as `/gw/` is kept). */
  private readonly base: URL;
  private readonly held = new Set<Held>();

  constructor(url: URL) {
    if (url.username || url.password) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        "the MIG URL carries a user name or password; give credentials as the client's `token` option instead",
        { retryable: false },
      );
    }
    const base = new URL(url.href);
    base.search = "";
    base.hash = "";
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.base = base;
    this.url = base.href.endsWith("/") ? base.href.slice(0, -1) : base.href;
  }

  hello(body: Outbound<HelloRequest>, call: CallContext): Promise<HelloResponse> {
    return this.post("hello", body, call);
  }

  discover(body: Outbound<DiscoverRequest>, call: CallContext): Promise<DiscoverResponse> {
    return this.post("discover", body, call);
  }

  invoke(capability: string, body: Outbound<InvokeRequest>, call: CallContext): Promise<InvokeResponse> {
    return this.post(`invoke/${segment(capability, "capability")}`, body, call);
  }

  cancel(targetMessageId: string, body: Outbound<CancelRequest>, call: CallContext): Promise<CancelAck> {
    return this.post(`cancel/${segment(targetMessageId, "message id")}`, body, call);
  }

  publish(topic: string, body: Outbound<PublishRequest>, call: CallContext): Promise<PublishAck> {
    return this.post(`publish/${segment(topic, "topic")}`, body, call);
  }

  heartbeat(body: Outbound<HeartbeatRequest>, call: CallContext): Promise<HeartbeatAck> {
    return this.post("heartbeat", body, call);
  }

  async openStream(open: StreamOpen, call: CallContext): Promise<StreamChannel> {
    if (call.signal.aborted) throw abortError(call.signal);
    const target = this.endpoint("stream");
    target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
    let requestText: string;
    try {
      requestText = JSON.stringify({ ...open.request, stream_id: open.stream_id, kind: "request" });
    } catch (err) {
      throw unencodable("the stream's request", err);
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(target, {
        headers: callHeaders(call, open.request.header, {}),
        perMessageDeflate: false,
      });
    } catch (err) {
      if (err instanceof MigError) throw err;
      throw unreachable(this.url, err);
    }
    const channel = new WebSocketStream(ws, open, requestText, this.url, () => this.held.delete(channel));
    this.held.add(channel);
    const onAbort = () => channel.drop(abortError(call.signal));
    call.signal.addEventListener("abort", onAbort, { once: true });
    try {
      await channel.accepted;
    } finally {
      call.signal.removeEventListener("abort", onAbort);
    }
    return channel;
  }

  async openSubscription(open: SubscribeOpen, call: CallContext): Promise<SubscriptionChannel> {
    if (call.signal.aborted) throw abortError(call.signal);
    const target = this.endpoint(`subscribe/${segment(open.topic, "topic")}`);
    const { request } = open;
    // Only the parameters the caller set: an absent resume_cursor means "start live".
    if (request.consumer_id !== undefined) target.searchParams.set("consumer_id", request.consumer_id);
    if (request.resume_cursor !== undefined) target.searchParams.set("resume_cursor", String(request.resume_cursor));
    if (request.max_inflight !== undefined) target.searchParams.set("max_inflight", String(request.max_inflight));
    const headers = callHeaders(call, request.header, { accept: "text/event-stream" });
    const subscription = new SseSubscription(this.url, call.signal, () => this.held.delete(subscription));
    this.held.add(subscription);
    try {
      await subscription.open(target, headers);
    } catch (err) {
      subscription.drop(err as MigError);
      throw err;
    }
    return subscription;
  }

  async close(): Promise<void> {
    const closed = new MigError("MIG_UNAVAILABLE", `the client closed its connection to ${this.url}`, {
      retryable: false,
    });
    for (const held of [...this.held]) held.drop(closed);
    this.held.clear();
  }

  private endpoint(path: string): URL {
    return new URL(API + path, this.base);
  }

  /** One unary exchange: the body as JSON, the answer's body or its MigError. */
  private async post<T>(path: string, body: Outbound<object>, call: CallContext): Promise<T> {
    if (call.signal.aborted) throw abortError(call.signal);
    let text: string;
    try {
      text = JSON.stringify(body);
    } catch (err) {
      throw unencodable("the request", err);
    }
    const headers = callHeaders(call, body.header, { "content-type": "application/json", accept: "application/json" });
    let res: Response;
    try {
      res = await fetch(this.endpoint(path), { method: "POST", headers, body: text, signal: call.signal });
    } catch (err) {
      throw call.signal.aborted ? abortError(call.signal) : unreachable(this.url, err);
    }
    let answer: string;
    try {
      answer = await res.text();
    } catch {
      throw call.signal.aborted ? abortError(call.signal) : closedEarly(this.url, "reading the answer");
    }
    const headerOf: HeaderOf = (name) => res.headers.get(name);
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer);
    } catch {
      throw answerError(this.url, res.status, headerOf, answer, undefined);
    }
    if (res.ok && isObject(parsed) && envelopeError(parsed) === undefined) return parsed as T;
    throw answerError(this.url, res.status, headerOf, answer, parsed);
  }
}

/**
 * The MigError of an answer that is not a success: the envelope's error when it is one. Otherwise the answer came from
 * something that is not a MIG server. A 502, 503 or 504 is what a proxy or load balancer answers when the MIG server
 * behind it is down or restarting, so it is MIG_UNAVAILABLE and retryable; anything else (a 200 HTML page, another
 * service's 404, a broken body) means the URL names something else, which a retry will not change: MIG_INTERNAL.
 */
function answerError(url: string, status: number, headerOf: HeaderOf, text: string, parsed: unknown): MigError {
  const retryAfter = retryAfterMs(headerOf("retry-after"));
  const error = envelopeError(parsed);
  if (error) {
    if (retryAfter === undefined || typeof error.details?.retry_after_ms === "number") return error;
    return new MigError(error.code, error.message, {
      retryable: error.retryable,
      details: { ...error.details, retry_after_ms: retryAfter },
    });
  }
  const type = headerOf("content-type");
  const what = `HTTP ${status}${type ? ` with ${type.split(";", 1)[0]}` : ""}`;
  if (GATEWAY_STATUSES.has(status)) {
    return new MigError(
      "MIG_UNAVAILABLE",
      `${url} answered ${what} without a MIG error envelope: a proxy in front of a MIG server that is down or ` +
        `restarting says so; retry${text ? `: ${JSON.stringify(text.slice(0, 120))}` : ""}`,
      {
        retryable: true,
        details: { url, status, ...(retryAfter === undefined ? {} : { retry_after_ms: retryAfter }) },
      },
    );
  }
  return notMigAnswer(url, what, text);
}

/** `Retry-After` in ms: delay-seconds or an HTTP date. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** A path segment: encoded, and never one that a URL would resolve away (`.` or `..`). */
function segment(value: string, what: string): string {
  if (value === "." || value === "..") {
    throw new MigError("MIG_INVALID_REQUEST", `${JSON.stringify(value)} is not a valid ${what}`, { retryable: false });
  }
  return encodeURIComponent(value);
}

/** Header values fetch and node:http accept: visible ASCII and tabs. */
const SENDABLE = /^[\t\x20-\x7e]*$/;

/**
 * The HTTP headers of a call. Trace context and idempotency key repeat the body's header for proxies and logs; a
 * value no HTTP header can carry is left to the body, which has it too. A token that cannot be sent is refused here.
 */
function callHeaders(
  call: CallContext,
  header: Partial<MessageHeader> | undefined,
  extra: Record<string, string>,
): Record<string, string> {
  const headers: Record<string, string> = { ...extra };
  if (SENDABLE.test(call.tenant)) headers["x-tenant-id"] = call.tenant;
  if (call.token) {
    if (!SENDABLE.test(call.token)) {
      throw new MigError(
        "MIG_UNAUTHORIZED",
        "the token has characters an HTTP Authorization header cannot carry; check the token the client was given",
        { retryable: false },
      );
    }
    headers.authorization = `Bearer ${call.token}`;
  }
  if (header?.traceparent && SENDABLE.test(header.traceparent)) headers.traceparent = header.traceparent;
  if (header?.idempotency_key && SENDABLE.test(header.idempotency_key)) {
    headers["idempotency-key"] = header.idempotency_key;
  }
  return headers;
}

function unencodable(what: string, err: unknown): MigError {
  return new MigError(
    "MIG_INVALID_REQUEST",
    `${what} cannot be encoded as JSON (${err instanceof Error ? err.message : String(err)}); send plain JSON values`,
    { retryable: false },
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function textOf(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data as ArrayBuffer).toString("utf8");
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: MigError): void;
}

/**
 * One stream on its own WebSocket. It is accepted when the server has read the request frame without refusing it:
 * the first frame from the server, or the pong of a ping sent right behind the request (the server refuses a request
 * frame as it reads it, so a refusal arrives before that pong). Waiting for a data frame alone would hang a bidi
 * stream whose provider waits for the caller's first message, and the caller cannot send before the stream is
 * accepted. The caller's reading pace is the credit: past STREAM_QUEUE unread frames the socket is not read, TCP
 * fills, the server's writes stop completing and the provider's `emit()` waits.
 */
class WebSocketStream implements StreamChannel, Held {
  readonly accepted: Promise<void>;
  private opening: Waiter<void> | undefined;
  private readonly queue: StreamFrame[] = [];
  private waiters: Waiter<StreamFrame>[] = [];
  private failure: MigError | undefined;
  /** The terminal frame arrived: anything after it (the answer to a late cancel) is not the caller's. */
  private ended = false;
  private paused = false;
  private closedHere = false;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly open: StreamOpen,
    requestText: string,
    private readonly url: string,
    private readonly release: () => void,
  ) {
    this.accepted = new Promise<void>((resolve, reject) => {
      this.opening = { resolve, reject };
    });
    ws.on("open", () => {
      ws.send(requestText);
      ws.ping();
    });
    ws.on("pong", () => this.accept());
    ws.on("message", (data) => this.onMessage(data));
    ws.on("unexpected-response", (_req, res) => this.onRefusedUpgrade(res));
    ws.on("error", (err) => {
      if (this.opening) this.fail(unreachable(this.url, err));
      // Once open, the close event follows and says the stream broke off.
    });
    ws.on("close", () => this.onClose());
  }

  next(): Promise<StreamFrame> {
    const frame = this.queue.shift();
    if (frame !== undefined) {
      if (this.paused && this.queue.length <= STREAM_QUEUE / 2) {
        this.paused = false;
        this.ws.resume();
      }
      return Promise.resolve(frame);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) {
      return Promise.reject(new MigError("MIG_INVALID_REQUEST", "the stream has ended: it has no more frames"));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  send(payload: JsonObject | undefined, end: boolean): void {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) return;
    const frame: Record<string, unknown> = {
      header: this.open.request.header,
      stream_id: this.open.stream_id,
      capability: this.open.capability,
      kind: "request",
      end_stream: end,
    };
    if (payload !== undefined) frame.payload = payload;
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      // Called from a promise callback: a throw would be nobody's. The stream ends with the reason instead.
      this.fail(unencodable("a bidi message", err));
      this.cancel("the caller's message could not be encoded as JSON");
      this.close();
      return;
    }
    this.ws.send(text);
  }

  cancel(reason: string): void {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(
      JSON.stringify({
        header: this.open.request.header,
        stream_id: this.open.stream_id,
        capability: this.open.capability,
        kind: "control",
        payload: { action: "cancel", reason },
      }),
    );
  }

  close(): void {
    if (this.closedHere) return;
    this.closedHere = true;
    this.queue.length = 0;
    if (this.ws.readyState === WebSocket.OPEN) {
      // A paused socket would never read the server's close frame.
      this.ws.resume();
      this.ws.close(1000);
      this.closeTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
      this.closeTimer.unref();
    } else if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }

  /** Ends the stream at once with `reason` (the caller's abort while opening, the transport's close). */
  drop(reason: MigError): void {
    this.fail(reason);
    this.closedHere = true;
    this.ws.terminate();
  }

  private accept(): void {
    const opening = this.opening;
    this.opening = undefined;
    opening?.resolve();
  }

  private onMessage(data: RawData): void {
    if (this.closedHere || this.ended) return;
    const text = textOf(data);
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      frame = undefined;
    }
    if (!isObject(frame) || typeof frame.kind !== "string") {
      this.fail(notMigAnswer(this.url, "a WebSocket message that is not a stream frame", text));
      this.close();
      return;
    }
    const streamFrame = frame as unknown as StreamFrame;
    if (streamFrame.end_stream === true) this.ended = true;
    if (this.opening && this.ended && streamFrame.kind === "error") {
      // Refused: the stream never started.
      this.fail(MigError.fromBody(streamFrame.error ?? {}));
      this.close();
      return;
    }
    this.accept();
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve(streamFrame);
      return;
    }
    this.queue.push(streamFrame);
    if (!this.paused && this.queue.length >= STREAM_QUEUE) {
      this.paused = true;
      this.ws.pause();
    }
  }

  /** The upgrade was answered with an HTTP answer instead of 101: its envelope says why. */
  private onRefusedUpgrade(res: IncomingMessage): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const text = Buffer.concat(chunks).toString("utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const headerOf: HeaderOf = (name) => {
        const value = res.headers[name];
        return (Array.isArray(value) ? value[0] : value) ?? null;
      };
      this.drop(answerError(this.url, res.statusCode ?? 0, headerOf, text, parsed));
    };
    res.on("data", (chunk: Buffer) => {
      if (size < ANSWER_SAMPLE_BYTES) chunks.push(chunk);
      size += chunk.length;
    });
    res.on("end", finish);
    res.on("close", finish);
    res.on("error", finish);
  }

  private onClose(): void {
    clearTimeout(this.closeTimer);
    this.release();
    if (this.ended) return;
    this.fail(
      closedEarly(this.url, this.opening ? "waiting for the stream to open" : "waiting for the stream's last frame"),
    );
  }

  /** The stream's one failure: the opening and every waiting `next()` reject with it; later ones too. */
  private fail(err: MigError): void {
    if (this.failure) return;
    this.failure = err;
    const opening = this.opening;
    this.opening = undefined;
    opening?.reject(err);
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) waiter.reject(err);
  }
}

/** One SSE block: its fields and its comment lines (without the leading colon). */
interface SseBlock {
  event: string | undefined;
  data: string | undefined;
  comments: string[];
}

/** Splits a text/event-stream into blocks; lines may end in LF, CRLF or CR, and may be cut anywhere between chunks. */
class SseParser {
  private buffered = "";

  push(text: string): SseBlock[] {
    let input = this.buffered + text;
    // A CR at the end may be the first half of a CRLF: keep it for the next chunk.
    let carry = "";
    if (input.endsWith("\r")) {
      carry = "\r";
      input = input.slice(0, -1);
    }
    input = input.replace(/\r\n?/g, "\n");
    const blocks: SseBlock[] = [];
    let end: number;
    while ((end = input.indexOf("\n\n")) !== -1) {
      blocks.push(parseBlock(input.slice(0, end)));
      input = input.slice(end + 2);
    }
    this.buffered = input + carry;
    return blocks;
  }
}

function parseBlock(text: string): SseBlock {
  const block: SseBlock = { event: undefined, data: undefined, comments: [] };
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) {
      block.comments.push(line.slice(1).trimStart());
      continue;
    }
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") block.event = value;
    else if (field === "data") block.data = block.data === undefined ? value : `${block.data}\n${value}`;
  }
  return block;
}

/** `key=value` words of a comment such as `subscribed topic=… subscription_id=… start_sequence=1`. */
function wordsOf(comment: string): Map<string, string> {
  const words = new Map<string, string>();
  for (const word of comment.split(/\s+/)) {
    const eq = word.indexOf("=");
    if (eq > 0) words.set(word.slice(0, eq), word.slice(eq + 1));
  }
  return words;
}

/**
 * One subscription as Server-Sent Events. The body is read only when the caller asks for an event and none is
 * queued, so what is queued is at most one chunk of the body; a slow caller leaves the rest in TCP and the server's
 * subscription pauses.
 */
class SseSubscription implements SubscriptionChannel, Held {
  info!: SubscriptionInfo;
  private readonly controller = new AbortController();
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private readonly decoder = new TextDecoder();
  private readonly parser = new SseParser();
  private readonly events: EventMessage[] = [];
  private failure: MigError | undefined;
  private reading: Promise<void> | undefined;
  private released = false;
  private readonly onCallAbort = () => this.controller.abort(this.callSignal.reason);

  constructor(
    private readonly url: string,
    private readonly callSignal: AbortSignal,
    private readonly release: () => void,
  ) {
    callSignal.addEventListener("abort", this.onCallAbort, { once: true });
  }

  /** Sends the GET and reads until the server's `subscribed` comment; rejects with the refusal otherwise. */
  async open(target: URL, headers: Record<string, string>): Promise<void> {
    let res: Response;
    try {
      res = await fetch(target, { headers, signal: this.controller.signal });
    } catch (err) {
      throw this.controller.signal.aborted ? this.stopped() : unreachable(this.url, err);
    }
    const type = res.headers.get("content-type") ?? "";
    if (res.status !== 200 || !type.startsWith("text/event-stream") || !res.body) {
      const text = await sampleOf(res);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw answerError(this.url, res.status, (name) => res.headers.get(name), text, parsed);
    }
    this.reader = res.body.getReader();
    while (this.info === undefined) {
      if (this.failure) throw this.failure;
      await this.pull();
    }
  }

  async next(): Promise<EventMessage> {
    for (;;) {
      const event = this.events.shift();
      if (event !== undefined) return event;
      if (this.failure) throw this.failure;
      await this.pull();
    }
  }

  async close(): Promise<void> {
    this.drop(new MigError("MIG_UNAVAILABLE", "the subscription was closed by its caller", { retryable: false }));
  }

  drop(reason: MigError): void {
    this.fail(reason);
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.reader?.cancel().catch(() => undefined);
    this.releaseOnce();
  }

  private releaseOnce(): void {
    if (this.released) return;
    this.released = true;
    this.callSignal.removeEventListener("abort", this.onCallAbort);
    this.release();
  }

  /** One read of the body; concurrent callers share it. Never rejects: a failure is kept for `next()`. */
  private pull(): Promise<void> {
    this.reading ??= this.readChunk().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async readChunk(): Promise<void> {
    const reader = this.reader;
    if (!reader) return this.fail(closedEarly(this.url, "waiting for the subscription to open"));
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch {
      return this.fail(this.controller.signal.aborted ? this.stopped() : this.closedEarly());
    }
    if (chunk.done) {
      // An unfinished block at the end is dropped, as EventSource drops it.
      this.releaseOnce();
      return this.fail(this.closedEarly());
    }
    for (const block of this.parser.push(this.decoder.decode(chunk.value, { stream: true }))) this.onBlock(block);
  }

  private onBlock(block: SseBlock): void {
    for (const comment of block.comments) {
      if (this.info === undefined && comment.startsWith("subscribed ")) this.onSubscribed(wordsOf(comment));
    }
    if (block.event === "mig-event") {
      const event = parseJson(block.data);
      if (isObject(event) && typeof event.sequence === "number") this.events.push(event as unknown as EventMessage);
      else this.fail(notMigAnswer(this.url, "an SSE mig-event that is not an EventMessage", block.data ?? ""));
    } else if (block.event === "mig-error") {
      const error = envelopeError(parseJson(block.data));
      this.fail(error ?? notMigAnswer(this.url, "an SSE mig-error that is not an error envelope", block.data ?? ""));
    }
  }

  private onSubscribed(words: Map<string, string>): void {
    const start = Number(words.get("start_sequence"));
    const id = words.get("subscription_id");
    if (id === undefined || !Number.isSafeInteger(start)) {
      this.fail(notMigAnswer(this.url, "an SSE `subscribed` comment without subscription_id and start_sequence"));
      return;
    }
    const consumer = words.get("consumer_id");
    this.info = { subscription_id: id, start_sequence: start, ...(consumer ? { consumer_id: consumer } : {}) };
  }

  /** Why the body stopped when this side stopped it: the caller's signal, or close(). */
  private stopped(): MigError {
    return this.failure ?? abortError(this.controller.signal);
  }

  private closedEarly(): MigError {
    return closedEarly(this.url, this.info ? "waiting for events" : "waiting for the subscription to open");
  }

  private fail(err: MigError): void {
    this.failure ??= err;
  }
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The beginning of an answer's body, at most ANSWER_SAMPLE_BYTES: enough for an envelope, never an endless stream. */
async function sampleOf(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (text.length < ANSWER_SAMPLE_BYTES) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } catch {
    // What arrived is the sample.
  } finally {
    reader.cancel().catch(() => undefined);
  }
  return text;
}
