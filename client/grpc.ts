// The client's gRPC transport: the mig.v0_1 services over plaintext HTTP/2 (`grpc://host:port`), bodies translated
// with the shared proto ↔ JSON walks, MIG errors read from the trailers, streams read only as fast as the caller reads.
import { join } from "node:path";
import {
  Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  credentials,
  Metadata,
  type MethodDefinition,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { MigError } from "../schemas/errors.ts";
import { answerFromProto, type ProtoObject, toProto } from "../schemas/proto-json.ts";
import type { EventMessage, JsonObject, MessageHeader, StreamFrame } from "../schemas/types.ts";
import { abortError, closedEarly, notMigAnswer, unreachable } from "./errors.ts";
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

const PROTO_FILE = join(import.meta.dirname, "../schemas/mig.proto");

/** The server's proto-loader options: the shared translation reads objects of exactly this shape. */
const LOADER_OPTIONS = { keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true };

/** The port of a `grpc://` URL without one: the gRPC binding's default (MIG_GRPC_ADDR). */
const DEFAULT_PORT = "9090";

/**
 * How long past `header.deadline_ms` the call itself may run: the runtime's own deadline ends the work first and
 * answers MIG_TIMEOUT with its trailers, which say more than grpc-js's bare DEADLINE_EXCEEDED.
 */
const CALL_DEADLINE_SLACK_MS = 500;

/**
 * Frames or events taken off the wire and not yet asked for. When it is full the call is paused: grpc-js stops
 * reading the HTTP/2 stream, its flow-control window closes, and the runtime's credit runs out.
 */
const INBOX_LIMIT = 32;

let loaded: PackageDefinition | undefined;

function method(service: string, name: string): MethodDefinition<ProtoObject, ProtoObject> {
  loaded ??= loadSync(PROTO_FILE, LOADER_OPTIONS);
  const definition = (loaded[`mig.v0_1.${service}`] as Record<string, unknown>)[name];
  return definition as MethodDefinition<ProtoObject, ProtoObject>;
}

export function grpcTransport(url: URL): Transport {
  return new GrpcTransport(url);
}

class GrpcTransport implements Transport {
  readonly kind = "grpc" as const;
  readonly url: string;
  private readonly address: string;
  private connection: Client | undefined;
  /** Streaming calls still open, each as its cancel: a closed transport leaves none behind. */
  private readonly open = new Set<() => void>();

  constructor(target: URL) {
    this.address = `${target.hostname}:${target.port || DEFAULT_PORT}`;
    this.url = `grpc://${this.address}`;
  }

  readonly hello: Transport["hello"] = (body, call) => this.unary("Discovery", "Hello", body, call);
  readonly discover: Transport["discover"] = (body, call) => this.unary("Discovery", "Discover", body, call);
  readonly invoke: Transport["invoke"] = (_capability, body, call) => this.unary("Invocation", "Invoke", body, call);
  readonly cancel: Transport["cancel"] = (_target, body, call) => this.unary("Control", "Cancel", body, call);
  readonly publish: Transport["publish"] = (_topic, body, call) => this.unary("Events", "Publish", body, call);
  readonly heartbeat: Transport["heartbeat"] = (body, call) => this.unary("Control", "Heartbeat", body, call);

  async openStream(open: StreamOpen, call: CallContext): Promise<StreamChannel> {
    const what = "mig.v0_1.Invocation/StreamInvoke";
    const definition = method("Invocation", "StreamInvoke");
    const { header, payload } = open.request;
    const grpcCall = this.start(call, () =>
      this.client().makeBidiStreamRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        metadataOf(header, call),
        deadlineOf(header),
      ),
    );
    const channel = new GrpcStreamChannel(grpcCall, open, this.url, (err) => this.statusError(err, what));
    this.track(grpcCall, channel.ended);
    // StreamFrame has no stream_preference: a server_stream caller ends its input with its request, so that a
    // capability that also offers bidi_stream (which the server then picks) does not wait for more.
    channel.write({
      header,
      stream_id: open.stream_id,
      capability: open.capability,
      kind: "request",
      payload,
      end_stream: open.mode === "server_stream",
    });
    // A bidi provider may speak only after it heard from the caller, so a bidi stream is open once its request is
    // written (a refusal then comes from next()); a server stream is open at its first frame.
    if (open.mode === "bidi_stream") return channel;
    await settleOrAbort(channel.firstFrame, call.signal, () => grpcCall.cancel());
    return channel;
  }

  async openSubscription(open: SubscribeOpen, call: CallContext): Promise<SubscriptionChannel> {
    const what = "mig.v0_1.Events/Subscribe";
    const definition = method("Events", "Subscribe");
    const { header } = open.request;
    // No deadline: a subscription lasts until the caller leaves.
    const grpcCall = this.start(call, () =>
      this.client().makeServerStreamRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        toProto(open.request as unknown as JsonObject),
        metadataOf(header, call),
      ),
    );
    const channel = new GrpcSubscriptionChannel(grpcCall, this.url, (err) => this.statusError(err, what));
    this.track(grpcCall, channel.ended);
    await settleOrAbort(channel.opened, call.signal, () => grpcCall.cancel());
    return channel;
  }

  async close(): Promise<void> {
    for (const cancel of [...this.open]) cancel();
    this.connection?.close();
  }

  /** One grpc-js channel for the four services: lazily, so that a transport nobody uses opens no connection. */
  private client(): Client {
    this.connection ??= new Client(this.address, credentials.createInsecure(), {
      // The server bounds what it answers; the client takes whatever a MIG answer is.
      "grpc.max_receive_message_length": -1,
      // A server back from a restart is found within the client's own retry pause (grpc-js waits up to 120 s).
      "grpc.initial_reconnect_backoff_ms": 250,
      "grpc.max_reconnect_backoff_ms": 5_000,
    });
    return this.connection;
  }

  /** Starts a call, turning a synchronous failure (a closed client) into a MigError. */
  private start<T>(call: CallContext, begin: () => T): T {
    if (call.signal.aborted) throw abortError(call.signal);
    try {
      return begin();
    } catch (err) {
      throw err instanceof MigError ? err : unreachable(this.url, err);
    }
  }

  private track(grpcCall: { cancel(): void }, ended: Promise<unknown>): void {
    const cancel = () => grpcCall.cancel();
    this.open.add(cancel);
    void ended.finally(() => this.open.delete(cancel));
  }

  private unary<T>(service: string, name: string, body: Outbound<object>, call: CallContext): Promise<T> {
    const what = `mig.v0_1.${service}/${name}`;
    const definition = method(service, name);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        pending.cancel();
        reject(abortError(call.signal));
      };
      const pending = this.start(call, () =>
        this.client().makeUnaryRequest(
          definition.path,
          definition.requestSerialize,
          definition.responseDeserialize,
          toProto(body as JsonObject),
          metadataOf(body.header, call),
          deadlineOf(body.header),
          (err, value) => {
            call.signal.removeEventListener("abort", onAbort);
            if (call.signal.aborted) return; // already rejected with the abort's error
            if (err) reject(this.statusError(err, what));
            else
              try {
                resolve(answerOf(value!, this.url) as T);
              } catch (failure) {
                reject(failure);
              }
          },
        ),
      );
      call.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A call's non-OK status as a MigError: the server's own from the trailers, else what the status means. */
  private statusError(err: ServiceError, what: string): MigError {
    const code = textOf(err.metadata, "mig-error-code");
    if (MigError.isCode(code)) {
      const retryable = textOf(err.metadata, "mig-error-retryable");
      const details = detailsOf(textOf(err.metadata, "mig-error-details"));
      const prefix = `${code}: `;
      const message = err.details.startsWith(prefix) ? err.details.slice(prefix.length) : err.details;
      return new MigError(code, message, {
        ...(retryable === undefined ? {} : { retryable: retryable === "true" }),
        ...(details === undefined ? {} : { details }),
      });
    }
    const details = { url: this.url, grpc_status: status[err.code] ?? err.code, grpc_message: err.details };
    switch (err.code) {
      case status.UNAVAILABLE:
        // grpc-js's own sentence, e.g. "No connection established. Last error: connect ECONNREFUSED …".
        return unreachable(this.url, err.details.replace(/\s*Resolution note:\s*$/, ""));
      case status.CANCELLED:
        return closedEarly(this.url, `waiting for the answer to ${what} (${err.details})`);
      case status.DEADLINE_EXCEEDED:
        return new MigError("MIG_TIMEOUT", `no answer to ${what} from ${this.url} within the call's deadline`, {
          retryable: true,
          details,
        });
      case status.RESOURCE_EXHAUSTED:
        return new MigError(
          "MIG_BACKPRESSURE",
          `${this.url} refused ${what} for its size or load (${err.details}); send less, or retry later`,
          { details },
        );
      case status.UNIMPLEMENTED:
        return new MigError(
          "MIG_UNSUPPORTED_CAPABILITY",
          `the server at ${this.url} does not serve ${what} (${err.details}); check that the URL names a MIG gRPC endpoint`,
          { retryable: false, details },
        );
      default:
        return notMigAnswer(
          this.url,
          `${what} with gRPC status ${status[err.code] ?? err.code} and no MIG error`,
          err.details,
        );
    }
  }
}

/** The call's metadata: credentials, the tenant, and the header fields the binding also reads from metadata. */
function metadataOf(header: Partial<MessageHeader>, call: CallContext): Metadata {
  const metadata = new Metadata();
  try {
    if (call.token) metadata.set("authorization", `Bearer ${call.token}`);
    metadata.set("x-tenant-id", call.tenant);
    if (header.traceparent) metadata.set("traceparent", header.traceparent);
    if (header.idempotency_key) metadata.set("idempotency-key", header.idempotency_key);
  } catch (err) {
    // grpc-js refuses values that are not printable ASCII.
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `the token, tenant, traceparent or idempotency key cannot be sent as gRPC metadata: ${err instanceof Error ? err.message : String(err)}`,
      { retryable: false },
    );
  }
  return metadata;
}

function deadlineOf(header: Partial<MessageHeader>): { deadline?: number } {
  const ms = header.deadline_ms;
  return typeof ms === "number" && ms > 0 ? { deadline: Date.now() + ms + CALL_DEADLINE_SLACK_MS } : {};
}

function textOf(metadata: Metadata | undefined, key: string): string | undefined {
  const value = metadata?.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

function detailsOf(json: string | undefined): Record<string, unknown> | undefined {
  if (json === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(json);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A decoded answer in its JSON form; one the shared translation cannot read is not a MIG answer. */
function answerOf(message: ProtoObject, url: string): JsonObject {
  try {
    return answerFromProto(message);
  } catch (err) {
    throw notMigAnswer(url, "a message mig.v0_1 does not define", err instanceof Error ? err.message : String(err));
  }
}

/** Waits for `pending`, or rejects with the abort's error (and runs `onAbort`) when the signal fires first. */
function settleOrAbort<T>(pending: Promise<T>, signal: AbortSignal, onAbort: () => void): Promise<T> {
  if (signal.aborted) {
    onAbort();
    return Promise.reject(abortError(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const aborted = () => {
      onAbort();
      reject(abortError(signal));
    };
    signal.addEventListener("abort", aborted, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", aborted));
  });
}

/**
 * What a streaming call has read and the caller has not yet asked for, bounded: full, it pauses the call; drained to
 * half, it resumes it. After the call ended, the items still queued come first, then the end's error.
 */
class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: { resolve(item: T): void; reject(err: MigError): void }[] = [];
  private failure: MigError | undefined;
  private paused = false;
  /** Settles once the call has ended, for the transport's list of open calls. */
  readonly ended: Promise<void>;
  private markEnded!: () => void;

  constructor(private readonly call: { pause(): void; resume(): void }) {
    this.ended = new Promise((resolve) => {
      this.markEnded = resolve;
    });
  }

  get isOver(): boolean {
    return this.failure !== undefined;
  }

  put(item: T): void {
    if (this.failure) return;
    const waiter = this.waiters.shift();
    if (waiter) return waiter.resolve(item);
    this.items.push(item);
    if (this.items.length >= INBOX_LIMIT && !this.paused) {
      this.paused = true;
      this.call.pause();
    }
  }

  /** The call is over: `err` is what a caller asking for more gets once the queued items are taken. */
  end(err: MigError): void {
    if (this.failure) return;
    this.failure = err;
    this.markEnded();
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }

  take(): Promise<T> {
    if (this.items.length > 0) {
      const item = this.items.shift()!;
      if (this.paused && this.items.length <= INBOX_LIMIT / 2) {
        this.paused = false;
        this.call.resume();
      }
      return Promise.resolve(item);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

/** One StreamInvoke call as a StreamChannel. */
class GrpcStreamChannel implements StreamChannel {
  /** Resolves at the first frame; rejects when the call ends before one, or that frame is a terminal error. */
  readonly firstFrame: Promise<void>;
  private readonly inbox: Inbox<StreamFrame>;
  private opened!: { resolve(): void; reject(err: MigError): void };

  constructor(
    private readonly call: ClientDuplexStream<ProtoObject, ProtoObject>,
    private readonly open: StreamOpen,
    private readonly url: string,
    statusError: (err: ServiceError) => MigError,
  ) {
    this.inbox = new Inbox(call);
    this.firstFrame = new Promise<void>((resolve, reject) => {
      this.opened = { resolve, reject };
    });
    // A bidi stream is handed over before its first frame: nobody may be waiting on this.
    this.firstFrame.catch(() => undefined);
    call.on("data", (message: ProtoObject) => this.onFrame(message));
    call.on("error", (err: ServiceError) => this.end(statusError(err)));
    // 'end' comes after every frame was read: an OK status without a terminal frame.
    call.on("end", () => this.end(closedEarly(url, "waiting for the stream's last frame")));
  }

  get ended(): Promise<void> {
    return this.inbox.ended;
  }

  next(): Promise<StreamFrame> {
    return this.inbox.take();
  }

  send(payload: JsonObject | undefined, end: boolean): void {
    // The stream_id is all a later frame needs: the call already carries one stream.
    this.write({
      stream_id: this.open.stream_id,
      kind: "request",
      ...(payload === undefined ? {} : { payload }),
      end_stream: end,
    });
  }

  cancel(reason: string): void {
    this.write({
      stream_id: this.open.stream_id,
      kind: "control",
      payload: { action: "cancel", reason },
    });
  }

  close(): void {
    this.call.cancel();
  }

  /** Writes a frame while the call is open; after its end there is nobody to read it. */
  write(frame: JsonObject): void {
    if (this.inbox.isOver || this.call.writableEnded || this.call.destroyed) return;
    this.call.write(toProto(frame));
  }

  private onFrame(message: ProtoObject): void {
    let frame: StreamFrame;
    try {
      frame = answerOf(message, this.url) as unknown as StreamFrame;
    } catch (err) {
      this.end(err as MigError);
      this.call.cancel();
      return;
    }
    if (frame.end_stream && frame.kind === "error") this.opened.reject(MigError.fromBody(frame.error ?? {}));
    else this.opened.resolve();
    this.inbox.put(frame);
  }

  private end(err: MigError): void {
    this.opened.reject(err);
    this.inbox.end(err);
  }
}

/** One Events.Subscribe call as a SubscriptionChannel. */
class GrpcSubscriptionChannel implements SubscriptionChannel {
  info!: SubscriptionInfo;
  /** Resolves once the server named the subscription (initial metadata); rejects when the call ends before. */
  readonly opened: Promise<void>;
  private readonly inbox: Inbox<EventMessage>;

  constructor(
    private readonly call: ClientReadableStream<ProtoObject>,
    url: string,
    statusError: (err: ServiceError) => MigError,
  ) {
    this.inbox = new Inbox(call);
    this.opened = new Promise<void>((resolve, reject) => {
      call.on("metadata", (metadata: Metadata) => {
        const info = infoOf(metadata);
        if (info) {
          this.info = info;
          return resolve();
        }
        // Accepting it would lose the sequence a dropped wire resumes from.
        const failure = notMigAnswer(url, "a subscription without mig-subscription-id and mig-start-sequence metadata");
        reject(failure);
        this.inbox.end(failure);
        call.cancel();
      });
      call.on("error", (err: ServiceError) => {
        const failure = statusError(err);
        reject(failure);
        this.inbox.end(failure);
      });
      call.on("end", () => {
        const failure = closedEarly(url, "waiting for the subscription's next event");
        reject(failure);
        this.inbox.end(failure);
      });
    });
    call.on("data", (message: ProtoObject) => {
      try {
        this.inbox.put(answerOf(message, url) as unknown as EventMessage);
      } catch (err) {
        this.inbox.end(err as MigError);
        call.cancel();
      }
    });
  }

  get ended(): Promise<void> {
    return this.inbox.ended;
  }

  next(): Promise<EventMessage> {
    return this.inbox.take();
  }

  async close(): Promise<void> {
    this.call.cancel();
  }
}

/** What the server's initial metadata says of a subscription it opened. */
function infoOf(metadata: Metadata): SubscriptionInfo | undefined {
  const id = textOf(metadata, "mig-subscription-id");
  const start = Number(textOf(metadata, "mig-start-sequence"));
  if (id === undefined || !Number.isSafeInteger(start)) return undefined;
  const consumer = textOf(metadata, "mig-consumer-id");
  return { subscription_id: id, start_sequence: start, ...(consumer === undefined ? {} : { consumer_id: consumer }) };
}
