// Streams over the bus: a worker runs a stream handler and a gateway relays its frames, with credit-based flow control end to end.
//
//   gateway                                   worker (queue group mig-workers)
//   ── open  _MIG.stream[.@<version>].<capability>  ▶  runtime.openStream(...) with a bus FrameSink
//   ◀─ {open, control, window} on reply_to ──  (control = the worker's subject for this stream)
//   ◀─ {frame} / {frames} … on reply_to ─────  at most the worker's window without credit
//   ── {credit: n}  on control ─────────────▶  n frames' `written` callbacks: the worker's emit() goes on
//   ── {input} / {input_end} on control ────▶  bidi: the caller's frames, in order
//   ── {cancel}  on control ────────────────▶  cancel, deadline, backpressure or a closed socket at the gateway
//   ◀─ {end, ok, payload | error} ───────────  the provider's terminal frame
//
// The gateway grants credit only after its own session took the frame (`await emit()` resolved), so
// a slow consumer at the gateway pauses the worker's provider: neither side holds more than its window.
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { MigError, type MigErrorBody } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject, StreamMode } from "../../schemas/types.ts";
import { EMITTED } from "../flow/stream-session.ts";
import {
  decode,
  encode,
  INTERNAL_PREFIX,
  isObject,
  PROTOCOL_VERSION,
  principalOnWire,
  versionToken,
  type WorkRequest,
} from "../protocol/provider-protocol.ts";
import type { StreamContext, StreamHandler } from "../provider/provider.ts";
import type { FleetHost } from "./fleet-host.ts";
import { perHost, ReplyInbox } from "./reply-inbox.ts";

export const streamOpenSubject = (capability: string) => `${INTERNAL_PREFIX}.stream.${capability}`;
/** The stream opens of one version of a capability (versioned subjects: runtime/protocol/provider-protocol.ts). */
export const versionedStreamOpenSubject = (capability: string, version: string) =>
  `${INTERNAL_PREFIX}.stream.${versionToken(version)}.${capability}`;

/** Where a gateway opens a stream of `descriptor`'s version: its versioned subject when its workers take them there. */
export function openSubjectOf(descriptor: CapabilityDescriptor, versioned: boolean): string {
  return versioned ? versionedStreamOpenSubject(descriptor.id, descriptor.version) : streamOpenSubject(descriptor.id);
}

/** What a gateway sends to open a stream: a work request plus the mode. */
export interface StreamOpen extends WorkRequest {
  mode: StreamMode;
  /** Set when the gateway hands the stream off (runtime/fleet/stream-handoff.ts): the stream id of its public NATS subjects. */
  nats_stream_id?: string;
  /**
   * With a hand-off in auth mode jwt: a digest of the bearer token that opened the stream, so the worker
   * knows the opener's token on the inbound subject without being handed the credential (runtime/policy/control-guard.ts).
   */
  nats_token_digest?: string;
}

export type ToGateway =
  | { open: string; control: string; window: number; nats?: true }
  | { frame: JsonObject }
  | { frames: JsonObject[] }
  | { end: true; ok: true; payload: JsonObject }
  | { end: true; ok: false; error: MigErrorBody };

export type ToWorker =
  | { credit: number }
  | { input: JsonObject }
  | { input_end: true }
  | { cancel: string; silent?: boolean };

export function streams(descriptor: CapabilityDescriptor): boolean {
  return descriptor.modes.includes("server_stream") || descriptor.modes.includes("bidi_stream");
}

// ── gateway side ─────────────────────────────────────────────────────────────────────────────────

const relays = new WeakMap<FleetHost, StreamRelay>();

/** The stream handler of a capability that workers serve, or undefined when it does not stream. */
export function remoteStreamHandler(
  runtime: FleetHost,
  descriptor: CapabilityDescriptor,
  versioned = false,
): StreamHandler | undefined {
  if (!streams(descriptor)) return undefined;
  return perHost(relays, runtime, () => new StreamRelay(runtime)).handlerFor(descriptor, versioned);
}

/** A provider left the fleet: the remote streams it was running end now with MIG_UNAVAILABLE, not at their deadline. */
export function remoteStreamsProviderGone(runtime: FleetHost, providerId: string): void {
  relays.get(runtime)?.providerGone(providerId);
}

/** One per gateway: a single wildcard subscription receives the frames of every remote stream. */
class StreamRelay {
  private readonly nc: NatsConnection;
  private readonly inbox: ReplyInbox<RemoteStream>;

  constructor(private readonly runtime: FleetHost) {
    this.nc = runtime.bus.nc;
    this.inbox = new ReplyInbox(runtime, (stream, _token, msg) => this.onMessage(stream, msg));
  }

  handlerFor(descriptor: CapabilityDescriptor, versioned: boolean): StreamHandler {
    const subject = openSubjectOf(descriptor, versioned);
    return (payload, context) => this.run(descriptor, subject, payload, context);
  }

  private async run(
    descriptor: CapabilityDescriptor,
    subject: string,
    payload: JsonObject,
    context: StreamContext,
  ): Promise<JsonObject> {
    const capability = descriptor.id;
    const stream = new RemoteStream(this.nc, capability, context);
    const { token, subject: replyTo } = this.inbox.hold(stream);
    const open: StreamOpen = {
      v: PROTOCOL_VERSION,
      capability,
      // With tracing on, its traceparent is this process's stream span (runtime/flow/stream-session.ts).
      header: context.header,
      payload,
      principal: principalOnWire(context.principal),
      deadline_at: Date.now() + context.header.deadline_ms,
      reply_to: replyTo,
      version: descriptor.version,
      mode: context.mode,
    };
    this.nc.publish(subject, encode(open), { reply: replyTo });
    try {
      return await stream.result;
    } finally {
      this.inbox.release(token);
    }
  }

  providerGone(providerId: string): void {
    for (const [, stream] of this.inbox.entries()) {
      if (stream.provider !== providerId) continue;
      stream.fail(
        new MigError("MIG_UNAVAILABLE", `the worker ${providerId} stopped while streaming; retry the stream`, {
          retryable: true,
          details: { provider_id: providerId },
        }),
      );
    }
  }

  private onMessage(stream: RemoteStream, msg: Msg): void {
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      stream.fail(
        new MigError("MIG_UNAVAILABLE", `no live worker streams capability ${stream.capability}; retry shortly`),
      );
      return;
    }
    let value: unknown;
    try {
      value = decode(msg.data);
    } catch {
      value = undefined;
    }
    if (!isObject(value)) {
      this.runtime.metrics.providerReplies.inc({ reason: "garbage" });
      stream.fail(
        new MigError(
          "MIG_INTERNAL",
          `the provider of capability ${stream.capability} sent a stream message that is not msgpack`,
        ),
      );
      return;
    }
    stream.onMessage(value);
  }
}

/** The gateway's half of one remote stream: relays frames into the local session and credits back. */
class RemoteStream {
  readonly result: Promise<JsonObject>;
  private resolve!: (payload: JsonObject) => void;
  private reject!: (err: unknown) => void;
  private control: string | undefined;
  /** The provider_id of the worker running it, from its open message. */
  provider: string | undefined;
  private readonly unsent: ToWorker[] = [];
  private readonly frames: JsonObject[] = [];
  private pumping = false;
  private owed = 0;
  /** Credits go back in batches of half the worker's window (it says its window when it opens the stream). */
  private creditBatch = 8;
  private end: { ok: true; payload: JsonObject } | { ok: false; error: MigError } | undefined;
  private done = false;

  constructor(
    private readonly nc: NatsConnection,
    readonly capability: string,
    private readonly context: StreamContext,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    context.signal.addEventListener(
      "abort",
      () => {
        this.send({ cancel: String((context.signal.reason as Error)?.message ?? "aborted") });
        this.finish({ ok: false, error: context.signal.reason as MigError });
      },
      { once: true },
    );
    if (context.mode === "bidi_stream") void this.forwardInput();
  }

  onMessage(message: Record<string, unknown>): void {
    if (this.done) return;
    if (typeof message.open === "string" && typeof message.control === "string") {
      this.control = message.control;
      this.provider = message.open;
      const window = message.window;
      if (typeof window === "number" && Number.isInteger(window) && window > 0)
        this.creditBatch = Math.max(1, Math.floor(window / 2));
      for (const queued of this.unsent.splice(0)) this.nc.publish(this.control, encode(queued));
      return;
    }
    if (isObject(message.frame)) {
      this.frames.push(message.frame);
      void this.pump();
      return;
    }
    if (Array.isArray(message.frames)) {
      for (const frame of message.frames) if (isObject(frame)) this.frames.push(frame);
      void this.pump();
      return;
    }
    if (message.end === true) {
      this.end =
        message.ok === true && isObject(message.payload)
          ? { ok: true, payload: message.payload }
          : { ok: false, error: MigError.fromBody(isObject(message.error) ? message.error : {}) };
      void this.pump();
      return;
    }
    this.fail(
      new MigError("MIG_INTERNAL", `the provider of capability ${this.capability} sent an unknown stream message`),
    );
  }

  /**
   * Emits received frames one at a time; credits the worker per half window (one bus message for many
   * frames, while the worker still holds the other half to send), and at once whenever the queue runs dry.
   */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.frames.length > 0 && !this.done) {
        // Awaiting an emit that went out at once would cost each frame its own turn and socket write.
        const emitted = this.context.emit(this.frames.shift()!);
        if (emitted !== EMITTED) await emitted;
        if (++this.owed >= this.creditBatch || this.frames.length === 0) {
          this.send({ credit: this.owed });
          this.owed = 0;
        }
      }
      if (this.end && this.frames.length === 0) this.finish(this.end);
    } catch (err) {
      this.finish({
        ok: false,
        error: err instanceof MigError ? err : new MigError("MIG_INTERNAL", "the stream ended while relaying"),
      });
    } finally {
      this.pumping = false;
    }
  }

  private async forwardInput(): Promise<void> {
    try {
      for await (const input of this.context.inbound) this.send({ input });
      this.send({ input_end: true });
    } catch {
      // The stream ended: the abort listener has told the worker.
    }
  }

  fail(error: MigError): void {
    this.send({ cancel: error.message });
    this.finish({ ok: false, error });
  }

  private send(message: ToWorker): void {
    if (this.done) return;
    if (this.control) this.nc.publish(this.control, encode(message));
    else this.unsent.push(message);
  }

  private finish(end: { ok: true; payload: JsonObject } | { ok: false; error: MigError }): void {
    if (this.done) return;
    this.done = true;
    if (end.ok) this.resolve(end.payload);
    else this.reject(end.error);
  }
}

// ── worker side ──────────────────────────────────────────────────────────────────────────────────
