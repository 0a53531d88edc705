// The MIG client: the seven operations over any transport, with one behaviour on all of them: headers filled in,
// deadlines and AbortSignals, retries of retryable codes under one idempotency key, a token refreshed after a 401.
import { randomUUID } from "node:crypto";
import { decodeJwt } from "jose";
import { MigError } from "../schemas/errors.ts";
import type {
  CancelAck,
  DiscoverResponse,
  HeartbeatAck,
  HelloResponse,
  InvokeResponse,
  JsonObject,
  MessageHeader,
  PublishAck,
  StreamMode,
} from "../schemas/types.ts";
import { deadline } from "./deadline.ts";
import { abortError, unreachable } from "./errors.ts";
import { pause, type RetryOptions, type RetryPolicy, retryDelay, retryPolicy } from "./retry.ts";
import { MigStream } from "./stream.ts";
import { MigSubscription } from "./subscription.ts";
import type { CallContext, Outbound, Transport } from "./transport.ts";

/** Returns a bearer token; called again after the server refused the last one (401, MIG_UNAUTHORIZED). */
export type TokenSource = () => string | Promise<string>;

export interface ClientOptions {
  /** The tenant of every call; without it, the token's `tenant_id` (or `tenant`) claim. */
  tenant?: string;
  /** A bearer token, or a function that returns one (asked again when the server refuses it). */
  token?: string | TokenSource;
  /** The deadline of a call that names none, in ms (default 30000); sent as `header.deadline_ms`. */
  timeoutMs?: number;
  /** Retries of retryable codes (default 3 tries); `false` for none. */
  retry?: RetryOptions | false;
  /** W3C trace context of the caller, or a function that reads the current one (e.g. from OpenTelemetry). */
  traceparent?: string | (() => string | undefined);
  /** `header.session_id` of every call. */
  sessionId?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** This call's deadline in ms (the client's `timeoutMs` otherwise). */
  deadlineMs?: number;
  /** Overrides the client's retry setting for this call. */
  retry?: RetryOptions | false;
  traceparent?: string;
  meta?: JsonObject;
  /** This call's `header.message_id` (a new UUID otherwise): the target of a CANCEL. */
  messageId?: string;
}

export interface IdempotentCallOptions extends CallOptions {
  /**
   * Dedups a repeated call on the server. When retries are on and none is given, the client makes one, so a retry
   * can never run the operation twice.
   */
  idempotencyKey?: string;
}

export interface DiscoverOptions extends CallOptions {
  query?: string;
  includeSchemaRefs?: boolean;
  includeQos?: boolean;
}

export interface PublishOptions extends IdempotentCallOptions {
  /** The event's ordering key. */
  key?: string;
}

export interface StreamOptions extends Omit<CallOptions, "retry"> {
  /** `server_stream` (default) or `bidi_stream` (then `send()` and `end()` reach the provider). */
  mode?: StreamMode;
  streamId?: string;
}

export interface SubscribeOptions extends Omit<CallOptions, "deadlineMs" | "retry" | "messageId"> {
  /** Durable consumer name: the subscription continues where it left off, across connections and restarts. */
  consumerId?: string;
  /** Exclusive: the last sequence already had; 0 replays from the first event; unset starts live. */
  resumeCursor?: number;
  /** Events the server may have in flight to this subscriber (its default otherwise). */
  maxInflight?: number;
  /** Reconnection after a dropped wire (default: unlimited tries, backoff up to 5 s). */
  retry?: RetryOptions;
}

/** How long past a call's deadline the client waits for the server's own MIG_TIMEOUT before giving up itself. */
const DEADLINE_GRACE_MS = 1_000;
const DEFAULT_TIMEOUT_MS = 30_000;

export class MigClient {
  private readonly retry: RetryPolicy;
  private readonly timeoutMs: number;
  private tokenValue: string | undefined;
  private tenantValue: string | undefined;

  constructor(
    readonly transport: Transport,
    private readonly options: ClientOptions = {},
  ) {
    this.retry = retryPolicy(options.retry);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (typeof options.token === "string") this.tokenValue = options.token;
    this.tenantValue = options.tenant;
  }

  hello(options: CallOptions & { features?: string[] } = {}): Promise<HelloResponse> {
    return this.call(options, true, (header, call) =>
      this.transport.hello(
        {
          header,
          supported_versions: ["0.1"],
          requested_bindings: [this.transport.kind],
          ...(options.features ? { requested_features: options.features } : {}),
        },
        call,
      ),
    );
  }

  discover(options: DiscoverOptions = {}): Promise<DiscoverResponse> {
    return this.call(options, true, (header, call) =>
      this.transport.discover(
        {
          header,
          ...(options.query === undefined ? {} : { query: options.query }),
          include_schema_refs: options.includeSchemaRefs ?? true,
          include_qos: options.includeQos ?? true,
        },
        call,
      ),
    );
  }

  invoke(capability: string, payload: JsonObject, options: IdempotentCallOptions = {}): Promise<InvokeResponse> {
    return this.call(this.keyed(options), true, (header, call) =>
      this.transport.invoke(capability, { header, capability, payload }, call),
    );
  }

  cancel(targetMessageId: string, options: CallOptions & { reason?: string } = {}): Promise<CancelAck> {
    return this.call(options, true, (header, call) =>
      this.transport.cancel(
        targetMessageId,
        { header, target_message_id: targetMessageId, ...(options.reason ? { reason: options.reason } : {}) },
        call,
      ),
    );
  }

  publish(topic: string, payload: JsonObject, options: PublishOptions = {}): Promise<PublishAck> {
    return this.call(this.keyed(options), true, (header, call) =>
      this.transport.publish(
        topic,
        { header, topic, payload, ...(options.key === undefined ? {} : { key: options.key }) },
        call,
      ),
    );
  }

  heartbeat(options: CallOptions & { intervalMs?: number } = {}): Promise<HeartbeatAck> {
    return this.call(options, true, (header, call) =>
      this.transport.heartbeat(
        { header, ...(options.intervalMs === undefined ? {} : { interval_ms: options.intervalMs }) },
        call,
      ),
    );
  }

  /**
   * Opens a stream: iterate it for the provider's frames (the pace of the loop is the credit); `result` is the
   * terminal frame's payload; `break` or `return()` cancels it. Streams are not retried: the server does not dedup
   * them, so a retry would run the provider again.
   */
  stream(capability: string, payload: JsonObject, options: StreamOptions = {}): MigStream {
    const messageId = options.messageId ?? randomUUID();
    const streamId = options.streamId ?? `stream-${messageId}`;
    const mode = options.mode ?? "server_stream";
    // The stream's own deadline is the server's (header.deadline_ms); the local one is only a backstop.
    const deadlineMs = options.deadlineMs ?? this.timeoutMs;
    const limit = deadline(deadlineMs + DEADLINE_GRACE_MS, this.transport.url, options.signal);
    const signal = limit.signal;
    const opening = (async () => {
      const call = await this.context(signal);
      const header = this.header({ ...options, messageId }, deadlineMs, call.tenant);
      return this.transport.openStream(
        {
          capability,
          stream_id: streamId,
          mode,
          request: { header, capability, payload, stream_preference: mode },
        },
        call,
      );
    })();
    return new MigStream(opening, { messageId, streamId, url: this.transport.url, signal, dispose: limit.dispose });
  }

  /**
   * Subscribes to a topic: iterate it for events, in sequence order. After a dropped connection it subscribes again
   * from the last sequence it handed over, so the loop sees no gap and no duplicate; `close()` or `break` ends it.
   */
  subscribe(topic: string, options: SubscribeOptions = {}): MigSubscription {
    const policy = retryPolicy({ attempts: Number.POSITIVE_INFINITY, ...options.retry });
    return new MigSubscription(
      async (resumeCursor, signal) => {
        const call = await this.context(signal);
        const header = this.header(options, this.timeoutMs, call.tenant);
        return this.transport.openSubscription(
          {
            topic,
            request: {
              header,
              topic,
              ...(options.consumerId === undefined ? {} : { consumer_id: options.consumerId }),
              ...(resumeCursor === undefined ? {} : { resume_cursor: String(resumeCursor) }),
              ...(options.maxInflight === undefined ? {} : { max_inflight: options.maxInflight }),
            },
          },
          call,
        );
      },
      { resumeCursor: options.resumeCursor, policy, signal: options.signal, url: this.transport.url },
    );
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** With retries on, an idempotent-by-key call gets a key of its own when the caller gave none. */
  private keyed<T extends IdempotentCallOptions>(options: T): T {
    if (options.idempotencyKey !== undefined) return options;
    const policy = options.retry === undefined ? this.retry : retryPolicy(options.retry);
    return policy.attempts > 1 ? { ...options, idempotencyKey: randomUUID() } : options;
  }

  /**
   * Runs one operation with retries: every try carries the same message id and idempotency key, and the time left
   * of the call's deadline as `deadline_ms`. A refused token is asked for again once, when it came from a function.
   */
  private async call<T>(
    options: CallOptions & { idempotencyKey?: string },
    idempotent: boolean,
    exchange: (header: Outbound<object>["header"], call: CallContext) => Promise<T>,
  ): Promise<T> {
    const policy = options.retry === undefined ? this.retry : retryPolicy(options.retry);
    const deadlineMs = options.deadlineMs ?? this.timeoutMs;
    const deadlineAt = Date.now() + deadlineMs;
    const messageId = options.messageId ?? randomUUID();
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const left = Math.max(1, deadlineAt - Date.now());
      const limit = deadline(left + DEADLINE_GRACE_MS, this.transport.url, options.signal);
      let failure: MigError;
      try {
        const call = await this.context(limit.signal);
        const header = this.header({ ...options, messageId }, left, call.tenant);
        return await exchange(header, call);
      } catch (err) {
        failure = this.asMigError(err, limit.signal);
      } finally {
        limit.dispose();
      }
      if (failure.code === "MIG_UNAUTHORIZED" && typeof this.options.token === "function" && !refreshed) {
        refreshed = true;
        this.tokenValue = undefined;
        attempt--;
        continue;
      }
      if (!idempotent || !failure.retryable || attempt >= policy.attempts || options.signal?.aborted) throw failure;
      const delay = retryDelay(policy, attempt, failure);
      if (Date.now() + delay >= deadlineAt) throw failure;
      try {
        await pause(delay, options.signal);
      } catch {
        throw failure;
      }
    }
  }

  /** A failed try as the caller sees it: an abort or a deadline wins over whatever the transport made of it. */
  private asMigError(err: unknown, signal: AbortSignal): MigError {
    if (signal.aborted) return abortError(signal);
    if (err instanceof MigError) return err;
    return unreachable(this.transport.url, err);
  }

  /** The tenant and token of a call: the token asked for when there is none yet, the tenant read from it if need be. */
  async context(signal: AbortSignal): Promise<CallContext> {
    const source = this.options.token;
    if (this.tokenValue === undefined && typeof source === "function") this.tokenValue = await source();
    const tenant = this.tenantValue ?? tenantOf(this.tokenValue);
    if (!tenant) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        "the client knows no tenant: give connect() a `tenant` option, or a token with a tenant_id claim",
        { retryable: false },
      );
    }
    return { tenant, token: this.tokenValue, signal };
  }

  private header(
    options: { messageId?: string; idempotencyKey?: string; traceparent?: string; meta?: JsonObject },
    deadlineMs: number,
    tenant: string,
  ): Outbound<object>["header"] {
    const header: Outbound<object>["header"] & Partial<MessageHeader> = {
      mig_version: "0.1",
      message_id: options.messageId ?? randomUUID(),
      timestamp: new Date().toISOString(),
      tenant_id: tenant,
      deadline_ms: Math.max(1, Math.round(deadlineMs)),
    };
    const trace = options.traceparent ?? this.traceparent();
    if (trace) header.traceparent = trace;
    if (options.idempotencyKey !== undefined) header.idempotency_key = options.idempotencyKey;
    if (this.options.sessionId !== undefined) header.session_id = this.options.sessionId;
    if (options.meta !== undefined) header.meta = options.meta;
    return header;
  }

  private traceparent(): string | undefined {
    const source = this.options.traceparent;
    return typeof source === "function" ? source() : source;
  }
}

/** The tenant a JWT names (`tenant_id`, or `tenant`), read without verifying it: the server verifies. */
function tenantOf(token: string | undefined): string | undefined {
  if (!token) return undefined;
  try {
    const claims = decodeJwt(token);
    if (typeof claims.tenant_id === "string") return claims.tenant_id;
    if (typeof claims.tenant === "string") return claims.tenant;
  } catch {
    // Not a JWT: the server will say so; the caller must name the tenant.
  }
  return undefined;
}
