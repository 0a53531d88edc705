// The client's NATS transport: the binding's request/reply subjects for the unary operations, streams paced by the
// consumer's credit, and subscriptions delivered to an inbox, acknowledged as they are read and watched by heartbeats.
import { randomUUID } from "node:crypto";
import {
  AuthorizationError,
  ClosedConnectionError,
  connect,
  createInbox,
  DrainingConnectionError,
  InvalidArgumentError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  PermissionViolationError,
  RequestError,
  type Subscription,
  TimeoutError,
} from "@nats-io/transport-node";
import { MigError } from "../schemas/errors.ts";
import { ERROR_CODE_HEADER, HEARTBEAT_HEADER, MIRRORED_HEADER_FIELDS } from "../schemas/nats-headers.ts";
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

export interface NatsOptions {
  /** The bus user (in auth mode jwt, `user` of the HTTP binding's `/mig/v0.1/nats/credentials`). */
  user?: string;
  /** The bus user's password (`password` of those credentials). */
  pass?: string;
  /** A nats-server authentication token: the bus's own, not the MIG bearer token (that is the client's `token`). */
  token?: string;
  /** The prefix of this connection's inboxes: `_INBOX_<tenant>` with the bus users a jwt-mode runtime generates. */
  inboxPrefix?: string;
  /** The connection's name in the server's monitoring pages (default `mig-client`). */
  name?: string;
  /** How long connecting waits for the server's handshake, in ms (default 5000). */
  connectTimeoutMs?: number;
}

/** How long past a request's `deadline_ms` the transport waits for the server's own MIG_TIMEOUT. */
const REPLY_GRACE_MS = 500;
/** The deadline of a request whose header names none (the client always names one). */
const DEFAULT_DEADLINE_MS = 30_000;
/** How long a call waits for a dropped connection to come back before it fails (retryable) instead. */
const RECONNECT_WAIT_MS = 2_000;
/** The frames a stream may have on their way to this client: its buffer, and the provider's pace. */
const STREAM_CREDIT = 256;
/** How often the gateway serving a subscription says it is alive. */
const HEARTBEAT_MS = 1_000;
/** Silence (no event, no heartbeat) after which the gateway is taken for gone: about three heartbeats. */
const SILENCE_MS = 3.5 * HEARTBEAT_MS;
/** Bounds of the best-effort messages nobody waits for: a CANCEL after an abort, a subscription's close. */
const QUIET_TIMEOUT_MS = 1_000;
const LINE_BREAK = /[\r\n]/;

/**
 * Connects to the NATS server of `url` (`nats://host:port`, `tls://…`; `nats://user:pass@…` and `nats://token@…` are
 * read as credentials when `options` names none) and serves the MIG operations on its subjects. The connection
 * reconnects without end, learns the cluster's other servers from the first, and rejects with MIG_UNAVAILABLE when
 * the server cannot be reached now.
 */
export async function natsTransport(url: URL, options: NatsOptions = {}): Promise<Transport> {
  const server = `${url.protocol}//${url.host}`;
  const username = url.username ? decodeURIComponent(url.username) : undefined;
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  const user = options.user ?? (password === undefined ? undefined : username);
  const pass = options.pass ?? password;
  const token = options.token ?? (password === undefined && options.user === undefined ? username : undefined);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: server,
      name: options.name ?? "mig-client",
      timeout: options.connectTimeoutMs ?? 5_000,
      // A long-lived client: it never gives up, comes back quickly, and spreads a fleet's reconnects.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 250,
      reconnectJitterTLS: 500,
      ...(user === undefined ? {} : { user, pass: pass ?? "" }),
      ...(token === undefined ? {} : { token }),
      ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
      ...(url.protocol === "tls:" ? { tls: {} } : {}),
    });
  } catch (err) {
    throw connectError(server, err);
  }
  return new NatsTransport(nc, server, options.inboxPrefix);
}

function connectError(url: string, err: unknown): MigError {
  if (err instanceof AuthorizationError) {
    return new MigError(
      "MIG_UNAUTHORIZED",
      `the NATS server at ${url} refused this connection's credentials (${err.message}); check the bus user and password or token (in auth mode jwt, from /mig/v0.1/nats/credentials)`,
      { retryable: false, details: { url } },
    );
  }
  if (err instanceof InvalidArgumentError) {
    return new MigError("MIG_INVALID_REQUEST", `the NATS options are not valid: ${err.message}`, {
      retryable: false,
      details: { url },
    });
  }
  return unreachable(url, err);
}

/** A subject token from a caller's value: nats-server would route a wildcard or an empty token somewhere else. */
function subjectPart(value: string, what: string, dotted: boolean): string {
  const bad = dotted ? /[\s*>]|^\.|\.\.|\.$/ : /[\s*>.]/;
  if (value === "" || bad.test(value)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${what} ${JSON.stringify(value)} cannot be part of a NATS subject: no spaces, "*", ">"${dotted ? " or empty tokens" : ' or "."'}`,
      { retryable: false, details: { [what.replaceAll(" ", "_")]: value } },
    );
  }
  return value;
}

/** Only the bearer token, for the messages that steer something already open (credits, acks, cancel, close). */
function authHeaders(token: string | undefined): MsgHdrs | undefined {
  if (token === undefined) return undefined;
  if (LINE_BREAK.test(token)) {
    throw new MigError("MIG_UNAUTHORIZED", "the bearer token contains a line break, which no header can carry", {
      retryable: false,
    });
  }
  const headers = natsHeaders();
  headers.set("Authorization", `Bearer ${token}`);
  return headers;
}

/** The bearer token and the MIG header fields a NATS header can carry (a value with a line break stays in the body). */
function requestHeaders(header: Partial<MessageHeader>, token: string | undefined): MsgHdrs {
  const headers = authHeaders(token) ?? natsHeaders();
  for (const field of MIRRORED_HEADER_FIELDS) {
    const value = header[field];
    if (typeof value === "string" && value !== "" && !LINE_BREAK.test(value)) headers.set(field, value);
  }
  return headers;
}

/** A JSON object from a message's body, or undefined when it is not one. */
function jsonObject(msg: Msg): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(msg.string());
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The MigError of an error envelope, or of a reply that has only the `mig_error_code` header to say what it is. */
function replyError(msg: Msg, body: Record<string, unknown> | undefined): MigError | undefined {
  const fromBody = envelopeError(body);
  if (fromBody) return fromBody;
  const code = msg.headers?.get(ERROR_CODE_HEADER);
  if (!code || !MigError.isCode(code)) return undefined;
  return new MigError(code, `the server answered ${code} without an error envelope`, { retryable: false });
}

interface Exchange {
  subject: string;
  data: string;
  headers: MsgHdrs | undefined;
  timeoutMs: number;
  /** A reply that arrives after the caller stopped waiting: what it opened must be undone. */
  onLate?: (msg: Msg) => void;
}

/** What a stream's start answers (docs/streaming.md, NATS). */
interface StreamStarted {
  stream_id: string;
  subject: string;
  inbound_subject: string;
}

class NatsTransport implements Transport {
  readonly kind = "nats";
  private connected = true;
  private closedByCaller = false;
  /** Called when the connection drops: whatever waits on it (replies, frames, events) has lost messages. */
  private readonly onDrop = new Set<() => void>();
  private readonly onReconnect = new Set<() => void>();

  constructor(
    readonly nc: NatsConnection,
    readonly url: string,
    private readonly inboxPrefix: string | undefined,
  ) {
    void this.watch();
  }

  hello(body: Outbound<HelloRequest>, call: CallContext): Promise<HelloResponse> {
    return this.request(`${this.base(call)}.hello`, body, call);
  }

  discover(body: Outbound<DiscoverRequest>, call: CallContext): Promise<DiscoverResponse> {
    return this.request(`${this.base(call)}.discover`, body, call);
  }

  async invoke(capability: string, body: Outbound<InvokeRequest>, call: CallContext): Promise<InvokeResponse> {
    const subject = `${this.base(call)}.invoke.${subjectPart(capability, "capability", true)}`;
    try {
      return await this.request(subject, body, call);
    } catch (err) {
      // The runtime does not learn that its caller stopped waiting: without a CANCEL the provider runs on.
      if (call.signal.aborted) this.cancelQuietly(call, body.header.message_id, abortError(call.signal).message);
      throw err;
    }
  }

  cancel(targetMessageId: string, body: Outbound<CancelRequest>, call: CallContext): Promise<CancelAck> {
    const target = subjectPart(targetMessageId, "target message id", false);
    return this.request(`${this.base(call)}.control.cancel.${target}`, body, call);
  }

  publish(topic: string, body: Outbound<PublishRequest>, call: CallContext): Promise<PublishAck> {
    return this.request(`${this.base(call)}.events.${subjectPart(topic, "topic", true)}`, body, call);
  }

  heartbeat(body: Outbound<HeartbeatRequest>, call: CallContext): Promise<HeartbeatAck> {
    return this.request(`${this.base(call)}.control.heartbeat`, body, call);
  }

  async openStream(open: StreamOpen, call: CallContext): Promise<StreamChannel> {
    const base = this.base(call);
    const streamId = subjectPart(open.stream_id, "stream id", false);
    const control = authHeaders(call.token);
    // Subscribed before the start: the first frames may come as soon as the start is answered.
    const stream = new NatsStream(this, `${base}.stream.${streamId}`, streamId, control);
    const startSubject = `${base}.control.stream`;
    const start = { ...open.request, stream_id: streamId, stream_preference: open.mode };
    try {
      const started = await this.request<StreamStarted>(startSubject, start, call, (msg) => {
        // Started after all, for nobody: cancel it rather than leave it waiting for credit until its stall bound.
        const late = jsonObject(msg);
        if (typeof late?.inbound_subject === "string") this.publishQuietly(late.inbound_subject, CANCEL_FRAME, control);
      });
      if (typeof started.inbound_subject !== "string" || started.inbound_subject === "") {
        throw notMigAnswer(this.url, `on ${startSubject} without an inbound_subject`, JSON.stringify(started));
      }
      stream.start(started.inbound_subject);
      return stream;
    } catch (err) {
      stream.close();
      throw err;
    }
  }

  async openSubscription(open: SubscribeOpen, call: CallContext): Promise<SubscriptionChannel> {
    const base = this.base(call);
    const topic = subjectPart(open.topic, "topic", true);
    const control = authHeaders(call.token);
    const inbox = createInbox(this.inboxPrefix);
    // Subscribed before the request: replayed events may come before its answer.
    const subscription = new NatsEvents(this, inbox, topic, base, control);
    const subject = `${base}.subscribe.${topic}`;
    const request = { ...open.request, deliver_subject: inbox, heartbeat_ms: HEARTBEAT_MS };
    try {
      const opened = await this.request<Record<string, unknown>>(subject, request, call, (msg) => {
        // Opened after all, for nobody: close it, or the gateway would deliver into a dead inbox until its idle bound.
        const late = jsonObject(msg);
        if (typeof late?.subscription_id === "string")
          void this.requestQuietly(`${base}.subscription.${late.subscription_id}.close`, control);
      });
      const id = opened.subscription_id;
      const start = opened.start_sequence;
      if (typeof id !== "string" || typeof start !== "number") {
        throw notMigAnswer(
          this.url,
          `on ${subject} without a subscription_id and start_sequence`,
          JSON.stringify(opened),
        );
      }
      subscription.opened({
        subscription_id: id,
        start_sequence: start,
        ...(typeof opened.consumer_id === "string" ? { consumer_id: opened.consumer_id } : {}),
      });
      return subscription;
    } catch (err) {
      subscription.release();
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closedByCaller) return;
    this.closedByCaller = true;
    if (this.nc.isClosed()) return;
    // Draining needs the server: a connection that is down (and would reconnect forever) just closes.
    if (!this.connected) return this.nc.close();
    await this.nc.drain().catch(() => this.nc.close());
  }

  /** Runs `drop` when the connection drops (until the returned function is called). */
  whenDropped(drop: () => void): () => void {
    this.onDrop.add(drop);
    return () => this.onDrop.delete(drop);
  }

  /** A publish nobody waits for: a connection that is gone loses it, as it would lose any message. */
  publishQuietly(subject: string, data: string | undefined, headers: MsgHdrs | undefined): boolean {
    try {
      this.nc.publish(subject, data, headers ? { headers } : undefined);
      return true;
    } catch {
      return false;
    }
  }

  /** A short request whose answer nobody needs (a CANCEL, a close): it must neither hang nor fail anything. */
  requestQuietly(subject: string, headers: MsgHdrs | undefined, body: object = {}): Promise<void> {
    if (this.nc.isClosed()) return Promise.resolve();
    try {
      return this.nc
        .request(subject, JSON.stringify(body), { timeout: QUIET_TIMEOUT_MS, ...(headers ? { headers } : {}) })
        .then(
          () => undefined,
          () => undefined,
        );
    } catch {
      return Promise.resolve();
    }
  }

  /** A library's failure as the caller's MigError. */
  wireError(err: unknown, subject: string, timeoutMs?: number): MigError {
    if (err instanceof MigError) return err;
    const inner = err instanceof RequestError && err.cause instanceof Error ? err.cause : err;
    if (inner instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) {
      return new MigError(
        "MIG_UNAVAILABLE",
        `no MIG runtime answers on ${subject} at ${this.url}: is it running, and is the tenant right?`,
        { retryable: true, details: { url: this.url, subject } },
      );
    }
    if (inner instanceof TimeoutError) {
      return new MigError("MIG_TIMEOUT", `no answer on ${subject} from ${this.url} within ${timeoutMs ?? "its"} ms`, {
        retryable: true,
        details: { url: this.url, subject, ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }) },
      });
    }
    if (inner instanceof PermissionViolationError) {
      return new MigError(
        "MIG_FORBIDDEN",
        `the NATS server at ${this.url} does not let this connection ${inner.operation} on ${inner.subject}; check its bus user, and set inboxPrefix to that user's inbox prefix (_INBOX_<tenant> for the bus users of a jwt-mode runtime)`,
        { retryable: false, details: { url: this.url, subject: inner.subject } },
      );
    }
    if (this.closedByCaller) return this.closedError();
    if (
      inner instanceof ClosedConnectionError ||
      inner instanceof DrainingConnectionError ||
      err instanceof RequestError
    ) {
      return closedEarly(this.url, `waiting for the answer on ${subject}`);
    }
    return unreachable(this.url, err);
  }

  private closedError(): MigError {
    return new MigError("MIG_UNAVAILABLE", `this client's connection to ${this.url} was closed: connect again`, {
      retryable: false,
      details: { url: this.url },
    });
  }

  private base(call: CallContext): string {
    return `mig.v0_1.${subjectPart(call.tenant, "tenant", false)}`;
  }

  /** One request with a JSON body; its answer, or the MigError of the error envelope or the failure. */
  private async request<T>(
    subject: string,
    body: Outbound<object>,
    call: CallContext,
    onLate?: (msg: Msg) => void,
  ): Promise<T> {
    const msg = await this.exchange(
      {
        subject,
        data: JSON.stringify(body),
        headers: requestHeaders(body.header, call.token),
        timeoutMs: (body.header.deadline_ms ?? DEFAULT_DEADLINE_MS) + REPLY_GRACE_MS,
        ...(onLate ? { onLate } : {}),
      },
      call.signal,
    );
    const answer = jsonObject(msg);
    const error = replyError(msg, answer);
    if (error) throw error;
    if (answer === undefined || "error" in answer) {
      throw notMigAnswer(
        this.url,
        `on ${subject} with ${answer ? "an error that is not a MIG error" : "a body that is not a JSON object"}`,
        msg.string(),
      );
    }
    return answer as T;
  }

  /** A request/reply bounded by its timeout, the caller's signal and the connection, whichever ends first. */
  private async exchange(exchange: Exchange, signal: AbortSignal): Promise<Msg> {
    if (signal.aborted) throw abortError(signal);
    await this.whenConnected(signal);
    const { subject, data, headers, timeoutMs, onLate } = exchange;
    let sent: Promise<Msg>;
    try {
      sent = this.nc.request(subject, data, { timeout: timeoutMs, ...(headers ? { headers } : {}) });
    } catch (err) {
      sent = Promise.reject(err);
    }
    return new Promise<Msg>((resolve, reject) => {
      let waiting = true;
      const settle = () => {
        waiting = false;
        signal.removeEventListener("abort", onAbort);
        this.onDrop.delete(onDrop);
      };
      const onAbort = () => {
        settle();
        reject(abortError(signal));
      };
      // A reply published while the connection was down is lost: fail now (retryable) instead of at the deadline.
      const onDrop = () => {
        settle();
        reject(closedEarly(this.url, `waiting for the answer on ${subject}`));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.onDrop.add(onDrop);
      sent.then(
        (msg) => {
          if (waiting) {
            settle();
            resolve(msg);
          } else onLate?.(msg);
        },
        (err: unknown) => {
          if (!waiting) return;
          settle();
          reject(this.wireError(err, subject, timeoutMs));
        },
      );
    });
  }

  /** Resolves at once on a live connection; a dropped one gets a short while to come back. */
  private whenConnected(signal: AbortSignal): Promise<void> {
    if (this.closedByCaller || this.nc.isClosed()) return Promise.reject(this.closedError());
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: MigError) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.onReconnect.delete(onBack);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () =>
          done(
            new MigError(
              "MIG_UNAVAILABLE",
              `the connection to ${this.url} is down and did not come back within ${RECONNECT_WAIT_MS} ms; the client keeps reconnecting, retry later`,
              { retryable: true, details: { url: this.url } },
            ),
          ),
        RECONNECT_WAIT_MS,
      );
      const onAbort = () => done(abortError(signal));
      const onBack = () => done();
      signal.addEventListener("abort", onAbort, { once: true });
      this.onReconnect.add(onBack);
    });
  }

  /** A CANCEL of `target` on the caller's behalf, after it stopped waiting; its answer does not matter. */
  private cancelQuietly(call: CallContext, target: string, reason: string): void {
    const header = {
      mig_version: "0.1",
      message_id: randomUUID(),
      timestamp: new Date().toISOString(),
      tenant_id: call.tenant,
      deadline_ms: QUIET_TIMEOUT_MS,
    };
    try {
      void this.requestQuietly(
        `${this.base(call)}.control.cancel.${subjectPart(target, "target message id", false)}`,
        requestHeaders(header, call.token),
        { header, target_message_id: target, reason },
      );
    } catch {
      // A target or token no subject or header can carry was refused with the call itself.
    }
  }

  private async watch(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === "disconnect") {
        this.connected = false;
        this.dropAll();
      } else if (status.type === "reconnect") {
        this.connected = true;
        for (const back of [...this.onReconnect]) back();
      }
    }
    this.connected = false;
    this.dropAll();
  }

  private dropAll(): void {
    const dropped = [...this.onDrop];
    this.onDrop.clear();
    for (const drop of dropped) drop();
  }
}

const CANCEL_FRAME = JSON.stringify({ kind: "control", payload: { action: "cancel", reason: "the caller went away" } });

/** Settles the next `next()` of a channel. */
interface Waiter<T> {
  resolve(value: T): void;
  reject(err: MigError): void;
}

/**
 * One stream's frames from its subject. The consumer's reading pace is the credit: the stream starts with
 * STREAM_CREDIT frames of credit and gets more, half of that at a time, as `next()` hands frames over, so at most
 * STREAM_CREDIT frames are on their way or queued here and a slow reader holds the provider back.
 */
class NatsStream implements StreamChannel {
  private readonly queue: StreamFrame[] = [];
  private readonly waiters: Waiter<StreamFrame>[] = [];
  private readonly sub: Subscription;
  private readonly unwatch: () => void;
  private inbound: string | undefined;
  private failure: MigError | undefined;
  /** The terminal frame came, the wire failed, or the stream was closed: nothing more arrives. */
  private over = false;
  private taken = 0;

  constructor(
    private readonly transport: NatsTransport,
    private readonly subject: string,
    private readonly streamId: string,
    private readonly control: MsgHdrs | undefined,
  ) {
    this.sub = transport.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) this.fail(transport.wireError(err, subject));
        else this.receive(msg);
      },
    });
    this.unwatch = transport.whenDropped(() => {
      // Frames sent meanwhile are lost. The cancel waits in the client's buffer and leaves when it reconnects.
      if (this.inbound) transport.publishQuietly(this.inbound, CANCEL_FRAME, control);
      this.fail(closedEarly(transport.url, `waiting for the frames of stream ${streamId}`));
    });
  }

  start(inbound: string): void {
    this.inbound = inbound;
    if (!this.over) this.grant(STREAM_CREDIT);
  }

  next(): Promise<StreamFrame> {
    const frame = this.queue.shift();
    if (frame) {
      this.took(frame);
      return Promise.resolve(frame);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.over) return Promise.reject(closedEarly(this.transport.url, `reading stream ${this.streamId}, closed`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  send(payload: JsonObject | undefined, end: boolean): void {
    const frame = { kind: "request", stream_id: this.streamId, ...(payload ? { payload } : {}), end_stream: end };
    this.toServer(JSON.stringify(frame));
  }

  cancel(reason: string): void {
    this.toServer(JSON.stringify({ kind: "control", stream_id: this.streamId, payload: { action: "cancel", reason } }));
  }

  close(): void {
    this.end();
    this.failWaiters(closedEarly(this.transport.url, `reading stream ${this.streamId}, closed`));
  }

  private receive(msg: Msg): void {
    if (this.over) return;
    const frame = jsonObject(msg) as StreamFrame | undefined;
    if (!frame || typeof frame.kind !== "string") {
      this.fail(
        notMigAnswer(this.transport.url, `on ${this.subject} with a frame that is not a StreamFrame`, msg.string()),
      );
      return;
    }
    if (frame.end_stream) this.end();
    const waiter = this.waiters.shift();
    if (waiter) {
      this.took(frame);
      waiter.resolve(frame);
    } else this.queue.push(frame);
  }

  /** A frame handed to the consumer: its credit goes back, in batches, while the stream runs. */
  private took(frame: StreamFrame): void {
    if (frame.end_stream || this.over) return;
    if (++this.taken < STREAM_CREDIT / 2) return;
    this.grant(this.taken);
    this.taken = 0;
  }

  private grant(credit: number): void {
    this.toServer(JSON.stringify({ kind: "control", stream_id: this.streamId, payload: { action: "credit", credit } }));
  }

  private toServer(data: string): void {
    if (!this.inbound || this.over) return;
    if (!this.transport.publishQuietly(this.inbound, data, this.control)) {
      this.fail(closedEarly(this.transport.url, `sending on stream ${this.streamId}`));
    }
  }

  private fail(err: MigError): void {
    if (this.over) return;
    this.failure = err;
    this.end();
    this.failWaiters(err);
  }

  private failWaiters(err: MigError): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  private end(): void {
    if (this.over) return;
    this.over = true;
    this.unwatch();
    this.sub.unsubscribe();
  }
}

/**
 * One subscription's events from its inbox. An event is acknowledged when the consumer asks for the next one, so
 * the gateway's `max_inflight` bounds what is queued here plus what the consumer holds. The gateway's heartbeats
 * tell a live gateway from a gone one: after SILENCE_MS of nothing, `next()` rejects (retryable) and the client's
 * MigSubscription subscribes again from its last sequence, on whichever gateway answers.
 */
class NatsEvents implements SubscriptionChannel {
  info: SubscriptionInfo = { subscription_id: "", start_sequence: 1 };
  private readonly queue: { event: EventMessage; msg: Msg }[] = [];
  private readonly waiters: Waiter<EventMessage>[] = [];
  private readonly sub: Subscription;
  private readonly unwatch: () => void;
  /** The event the consumer holds: acknowledged when it asks for the next. */
  private held: Msg | undefined;
  private failure: MigError | undefined;
  private over = false;
  private closed = false;
  private heardAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    private readonly transport: NatsTransport,
    inbox: string,
    private readonly topic: string,
    private readonly base: string,
    private readonly control: MsgHdrs | undefined,
  ) {
    this.sub = transport.nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (err) this.fail(transport.wireError(err, inbox));
        else this.receive(msg);
      },
    });
    this.unwatch = transport.whenDropped(() =>
      this.fail(closedEarly(transport.url, `waiting for the events of ${topic}`)),
    );
  }

  opened(info: SubscriptionInfo): void {
    this.info = info;
    this.heardAt = Date.now();
    if (this.over) return;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.heardAt <= SILENCE_MS) return;
      this.fail(
        new MigError(
          "MIG_UNAVAILABLE",
          `the gateway serving the subscription to ${this.topic} at ${this.transport.url} sent nothing (no event, no heartbeat) for ${SILENCE_MS} ms and is taken for gone; subscribe again from the last sequence`,
          { retryable: true, details: { url: this.transport.url, topic: this.topic } },
        ),
      );
    }, HEARTBEAT_MS);
    this.watchdog.unref();
  }

  next(): Promise<EventMessage> {
    this.ack();
    const next = this.queue.shift();
    if (next) {
      this.held = next.msg;
      return Promise.resolve(next.event);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.over)
      return Promise.reject(closedEarly(this.transport.url, `reading the events of ${this.topic}, closed`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.release();
    this.failWaiters(closedEarly(this.transport.url, `waiting for the events of ${this.topic}, closed`));
    if (this.info.subscription_id) {
      await this.transport.requestQuietly(`${this.base}.subscription.${this.info.subscription_id}.close`, this.control);
    }
  }

  /** Stops listening, without a word to the gateway. */
  release(): void {
    if (this.over) return;
    this.over = true;
    clearInterval(this.watchdog);
    this.unwatch();
    this.sub.unsubscribe();
  }

  private receive(msg: Msg): void {
    if (this.over) return;
    this.heardAt = Date.now();
    if (msg.headers?.get(HEARTBEAT_HEADER)) return;
    const body = jsonObject(msg);
    // The gateway ended the subscription (shutdown, takeover, a bus failure): its one error envelope says why.
    const error = replyError(msg, body);
    if (error) return this.fail(error);
    if (!body || typeof body.sequence !== "number") {
      return this.fail(
        notMigAnswer(
          this.transport.url,
          `on ${this.topic}'s inbox with something that is not an EventMessage`,
          msg.string(),
        ),
      );
    }
    const event = body as unknown as EventMessage;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.held = msg;
      waiter.resolve(event);
    } else this.queue.push({ event, msg });
  }

  private ack(): void {
    const held = this.held;
    this.held = undefined;
    if (!held || this.over) return;
    try {
      held.respond(undefined, this.control ? { headers: this.control } : undefined);
    } catch {
      // The connection is gone: the drop handler ends the subscription.
    }
  }

  private fail(err: MigError): void {
    if (this.over) return;
    this.failure = err;
    this.release();
    this.failWaiters(err);
  }

  private failWaiters(err: MigError): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }
}
