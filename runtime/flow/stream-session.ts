// A running stream: one stream actor, its provider, and the frames between them with credit-based flow control.

import type { Actor } from "xstate";
import { cancelError, type StreamEmitted, type StreamEnd, streamMachine } from "../../actors/stream.ts";
import { MigError } from "../../schemas/errors.ts";
import type { FrameKind, JsonObject, MessageHeader, StreamFrame, StreamMode } from "../../schemas/types.ts";
import type { Metrics } from "../base/metrics.ts";
import { type Span, withTraceparent } from "../base/tracing.ts";
import type { Principal } from "../protocol/principal.ts";
import { settleHandler } from "../provider/handler-result.ts";
import { checkOutput, type OutputChecks, providerError } from "../provider/output.ts";
import type { StreamContext } from "../provider/provider.ts";
import type { RegisteredCapability } from "../provider/registry.ts";
import { FrameQueue } from "./frame-queue.ts";
import type { InflightTables, StreamFlow } from "./inflight.ts";
import { leafState, type Supervisor } from "./supervisor.ts";

/** What a stream session uses of the runtime: its settings, supervisor and metrics, and the stream table. */
export interface SessionHost extends OutputChecks {
  config: { streamWindow: number; streamStallMs: number; maxJsonDepth: number };
  metrics: Metrics;
  supervisor: Supervisor;
  work: InflightTables;
}

/** Where a stream's frames go: a WebSocket, an SSE response, a bus subject. */
export interface FrameSink {
  /**
   * Writes one frame out and calls `written` once the frame has left this process's buffers (the
   * socket took it). Each call of `written` is one credit back to the stream. A sink whose consumer
   * is gone may drop the frame, but must still call `written`, or the stream ends with MIG_BACKPRESSURE.
   */
  write(frame: StreamFrame, written: () => void): void;
}

const STREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Text made once per stream: the header's JSON, and everything of a data frame but its payload. */
interface FrameText {
  header: string;
  streamId?: string;
  capability?: string;
  dataPrefix?: string;
  dataPrefixBytes?: Uint8Array | undefined;
}
const frameText = new WeakMap<MessageHeader, FrameText>();

const isDataFrame = (frame: StreamFrame): boolean =>
  frame.kind === "response" && frame.end_stream === false && frame.payload !== undefined && frame.error === undefined;

/** The text made once per stream for `frame`'s header, with the data-frame prefix of its stream id and capability. */
function textOf(frame: StreamFrame): FrameText {
  let text = frameText.get(frame.header);
  if (text === undefined) frameText.set(frame.header, (text = { header: JSON.stringify(frame.header) }));
  if (isDataFrame(frame) && (text.streamId !== frame.stream_id || text.capability !== frame.capability)) {
    text.streamId = frame.stream_id;
    text.capability = frame.capability;
    text.dataPrefix = `{"header":${text.header},"stream_id":${JSON.stringify(frame.stream_id)},"capability":${JSON.stringify(frame.capability)},"kind":"response","end_stream":false,"payload":`;
    text.dataPrefixBytes = undefined;
  }
  return text;
}

/**
 * A frame as JSON text, for sinks. Every frame of a stream carries the same header object, so its
 * JSON is made once per stream, not once per frame (the header is most of a small frame's bytes);
 * a data frame differs from the stream's previous one only in its payload, so only that is encoded.
 */
export function encodeFrame(frame: StreamFrame): string {
  const text = textOf(frame);
  if (isDataFrame(frame)) return `${text.dataPrefix}${JSON.stringify(frame.payload)}}`;
  const { header: _header, ...rest } = frame;
  const body = JSON.stringify(rest);
  return body === "{}" ? `{"header":${text.header}}` : `{"header":${text.header},${body.slice(1)}`;
}

const utf8 = new TextEncoder();
const CLOSE_BRACE = 0x7d;

/**
 * The same frame as UTF-8 bytes, for sinks that publish bytes (NATS). A data frame's prefix is encoded
 * once per stream and copied; only the payload's JSON is encoded per frame, straight into the frame's
 * buffer (the prefix is most of a small frame: encoding it per frame was the NATS sink's largest cost after writes).
 */
export function encodeFrameBytes(frame: StreamFrame): Uint8Array {
  if (!isDataFrame(frame)) return utf8.encode(encodeFrame(frame));
  const text = textOf(frame);
  const prefix = (text.dataPrefixBytes ??= utf8.encode(text.dataPrefix!));
  const payload = JSON.stringify(frame.payload);
  // At most 3 bytes per UTF-16 unit; subarray cuts the unused tail off without a copy. allocUnsafe takes
  // small buffers from Node's shared pool instead of making (and zeroing) an ArrayBuffer per frame.
  const out = Buffer.allocUnsafe(prefix.length + payload.length * 3 + 1);
  out.set(prefix);
  const { written } = utf8.encodeInto(payload, out.subarray(prefix.length));
  out[prefix.length + written] = CLOSE_BRACE;
  return out.subarray(0, prefix.length + written + 1);
}

/**
 * What emit() returns when the frame went out at once. A relay that emits many frames (runtime/fleet/remote-stream.ts)
 * goes on without awaiting it, so that its frames are published in one turn and leave in one socket write.
 */
export const EMITTED: Promise<void> = Promise.resolve();
const RESOLVED = EMITTED;

/** Checks a caller's stream id: it names the stream on the wire and becomes a NATS subject token. */
export function checkStreamId(value: unknown): string {
  if (typeof value !== "string" || !STREAM_ID.test(value)) {
    throw new MigError("MIG_INVALID_REQUEST", "stream_id must be 1 to 128 letters, digits, '-' or '_'");
  }
  return value;
}

const WAITING = { type: "WAITING" } as const;
const CREDITED = { type: "CREDITED" } as const;

interface PendingEmit {
  frame: StreamFrame;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * One live stream: the provider's side (emit, inbound frames, the AbortSignal), the consumer's side
 * (a FrameSink and its credits) and the actor that decides when it ends. The session holds at most
 * `streamWindow` frames on their way to the consumer plus the frames its provider is waiting to emit.
 */
export class StreamSession {
  readonly messageId: string;
  readonly tenant: string;
  readonly capability: string;
  /** The caller's principal subject: CANCEL may be limited to it (MIG_CANCEL_SAME_SUBJECT). */
  readonly subject: string;
  /** Resolves with the final state once the terminal frame has been handed to the sink. */
  readonly ended: Promise<StreamEnd>;
  /** The most frames this stream ever held at once (in transit + waiting for credit): the memory bound, observable. */
  highWater = 0;
  /** Frames the provider emitted. */
  emitted = 0;

  private readonly window: number;
  private readonly controller = new AbortController();
  private readonly inbound: FrameQueue<JsonObject>;
  private readonly pending: PendingEmit[] = [];
  private actor!: Actor<typeof streamMachine>;
  private inTransit = 0;
  /** Frames released to the provider since it last had to yield to the event loop. */
  private burst = 0;
  /** Turns the provider is yielding (after each window of frames) rather than waiting for credit. */
  private yielding = 0;
  private providerDone = false;
  private inputClosed = false;
  private inboundFull = false;
  private end: StreamEnd | undefined;
  private result: JsonObject = {};
  private resolveEnded!: (end: StreamEnd) => void;
  private pressureWatch: ((paused: boolean) => void) | undefined;

  constructor(
    private readonly core: SessionHost,
    private readonly entry: RegisteredCapability,
    readonly header: MessageHeader,
    private readonly principal: Principal,
    readonly mode: StreamMode,
    readonly streamId: string,
    private readonly sink: FrameSink,
    private readonly inboundPressure?: ((full: boolean) => void) | undefined,
    private readonly deadlineMs: number = header.deadline_ms,
  ) {
    this.messageId = header.message_id;
    this.tenant = header.tenant_id;
    this.capability = entry.descriptor.id;
    this.subject = principal.subject;
    this.window = core.config.streamWindow;
    // Past the window the binding stops reading its socket; the hard limit catches frames already read.
    this.inbound = new FrameQueue(Math.max(1024, core.config.streamWindow * 32), () => this.relieve());
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  /** Told each time the consumer's credit pauses the provider (true) and resumes it (false): the stream's span. */
  onPressure(watch: (paused: boolean) => void): void {
    this.pressureWatch = watch;
  }

  get isOver(): boolean {
    return this.end !== undefined;
  }

  /** Frames held right now: handed to the sink but not yet written out, plus those waiting for credit. */
  get held(): number {
    return this.inTransit + this.pending.length;
  }

  /** Its state and credits, for the admin console. */
  flow(): StreamFlow {
    const snapshot = this.actor.getSnapshot();
    return {
      state: leafState(snapshot.value),
      credit: Math.max(0, this.window - this.inTransit),
      window: this.window,
      held: this.held,
      paused: snapshot.hasTag("held"),
    };
  }

  /** Starts the actor and the provider; `span`, the stream's when tracing is on, is the provider's traceparent. */
  start(payload: JsonObject, span?: Span): void {
    const { core } = this;
    this.actor = core.supervisor.spawn(
      "stream",
      streamMachine,
      { deadlineMs: this.deadlineMs, stallMs: core.config.streamStallMs },
      this.crashed,
      this.heard,
    );
    core.work.startStream(this.messageId, this);
    core.metrics.streamsActive.inc();
    this.actor.send({ type: "OPENED" });

    const context: StreamContext = {
      header: withTraceparent(this.header, span),
      principal: this.principal,
      capability: this.entry.descriptor,
      signal: this.controller.signal,
      mode: this.mode,
      emit: (p) => this.emit(p),
      inbound: this.inbound,
    };
    settleHandler(
      () => this.entry.stream!(payload, context),
      (value) => this.providerFinished(value),
      (err) => this.providerFailed(err),
    );
  }

  // ── the provider's side ────────────────────────────────────────────────────────────────────────

  emit(payload: JsonObject): Promise<void> {
    if (this.end) return Promise.reject(this.stopReason());
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
      return Promise.reject(
        new MigError("MIG_INTERNAL", `capability ${this.capability} emitted a frame payload that is not a JSON object`),
      );
    }
    this.emitted++;
    const frame = this.frame("response", payload);
    if (this.inTransit < this.window && this.pending.length === 0) {
      this.send(frame);
      if (++this.burst < this.window) return RESOLVED;
      this.burst = 0;
      return this.yieldThen();
    }
    if (this.pending.length >= this.window) {
      // A provider that does not await emit() would make the runtime buffer without bound: refuse.
      const error = new MigError(
        "MIG_INTERNAL",
        `capability ${this.capability} emitted ${this.window} frames without awaiting emit(); the stream was ended`,
      );
      this.actor.send({ type: "FAIL", error });
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ frame, resolve, reject });
      this.core.metrics.bufferedFrames++;
      this.noteHeld();
      // The actor hears of the wait unless it knows already (it is held: paused, or checking a release).
      if (this.pending.length === 1 && !this.actor.getSnapshot().hasTag("held")) this.actor.send(WAITING);
    });
  }

  private providerFinished(value: unknown): void {
    if (this.end) return;
    if (value !== undefined && value !== null) {
      const problem = checkOutput(this.core, this.entry, value);
      if (problem) {
        this.actor.send({ type: "FAIL", error: problem });
        return;
      }
      this.result = value as JsonObject;
    }
    this.providerDone = true;
    this.actor.send({ type: "PROVIDER_DONE" });
    this.drainedYet();
  }

  private providerFailed(err: unknown): void {
    if (this.end) return;
    this.actor.send({ type: "FAIL", error: providerError(this.core, this.capability, this.messageId, err) });
  }

  // ── the consumer's side ────────────────────────────────────────────────────────────────────────

  private send(frame: StreamFrame): void {
    this.inTransit++;
    this.core.metrics.bufferedFrames++;
    this.noteHeld();
    this.sink.write(frame, this.written);
  }

  /** One frame left the process: one credit back; wakes a waiting provider. */
  private readonly written = (): void => {
    this.inTransit--;
    if (this.end) return; // finish() already took this stream's frames off the gauge
    this.core.metrics.bufferedFrames--;
    if (this.pending.length > 0) {
      while (this.pending.length > 0 && this.inTransit < this.window) {
        const next = this.pending.shift()!;
        this.core.metrics.bufferedFrames--;
        this.send(next.frame);
        this.release(next.resolve);
      }
      // Once per turn at most: after CREDITED the actor is resuming until the turn's end.
      if (this.pending.length === 0 && this.actor.getSnapshot().hasTag("waiting")) this.actor.send(CREDITED);
    }
    this.drainedYet();
  };

  /** What the actor tells its owner (actors/stream.ts, StreamEmitted). */
  private readonly heard = (event: StreamEmitted): void => {
    switch (event.type) {
      case "paused":
        this.core.metrics.streamsPaused.inc();
        this.pressureWatch?.(true);
        return;
      case "resumed":
        this.core.metrics.streamsPaused.dec();
        this.pressureWatch?.(false);
        return;
      case "checkTurn":
        setImmediate(this.turnEnded);
        return;
      case "end":
        this.finish(event.end);
        return;
    }
  };

  private readonly turnEnded = (): void => {
    if (!this.end) this.actor.send({ type: "TURN_END", waiting: this.pending.length > 0, yielding: this.yielding > 0 });
  };

  private readonly crashed = (): void => {
    if (this.actor.getSnapshot().hasTag("held")) this.core.metrics.streamsPaused.dec();
    this.finish({
      state: "failed",
      error: new MigError("MIG_INTERNAL", `the stream ${this.streamId} failed inside the runtime; it was contained`),
    });
  };

  /**
   * Resolves an emit, but after every `window` frames only from setImmediate: a socket's write
   * callbacks come back on process.nextTick, so without this a fast provider writing to a fast
   * socket would hold the event loop until the kernel's buffer is full, starving every other caller.
   */
  private release(resolve: () => void): void {
    if (++this.burst < this.window) return resolve();
    this.burst = 0;
    void this.yieldThen().then(resolve);
  }

  /** A promise that resolves on the next turn; while it is out, the provider is not waiting for credit but yielding. */
  private yieldThen(): Promise<void> {
    this.yielding++;
    return new Promise((resolve) =>
      setImmediate(() => {
        this.yielding--;
        resolve();
      }),
    );
  }

  private drainedYet(): void {
    if (this.providerDone && this.inTransit === 0 && this.pending.length === 0 && !this.end)
      this.actor.send({ type: "DRAINED" });
  }

  private noteHeld(): void {
    const held = this.inTransit + this.pending.length;
    if (held > this.highWater) this.highWater = held;
  }

  /** A frame from the caller after its request (bidi_stream); `end` closes the caller's half. */
  receive(payload: unknown, end: boolean): void {
    if (this.end)
      throw new MigError("MIG_INVALID_REQUEST", `stream ${this.streamId} has ended; it takes no more frames`);
    if (this.mode !== "bidi_stream") {
      this.fail(
        new MigError(
          "MIG_INVALID_REQUEST",
          `stream ${this.streamId} is a server_stream; it takes no frames after its request except a cancel`,
        ),
      );
      return;
    }
    if (this.inputClosed) {
      this.fail(
        new MigError("MIG_INVALID_REQUEST", `stream ${this.streamId} received a frame after the caller's end_stream`),
      );
      return;
    }
    if (payload !== undefined && payload !== null) {
      if (typeof payload !== "object" || Array.isArray(payload)) {
        this.fail(
          new MigError(
            "MIG_INVALID_REQUEST",
            `a request frame's payload must be a JSON object (stream ${this.streamId})`,
          ),
        );
        return;
      }
      this.core.metrics.framesCounted.in++;
      if (!this.inbound.push(payload as JsonObject)) {
        this.fail(
          new MigError(
            "MIG_BACKPRESSURE",
            `stream ${this.streamId}: the caller sent more frames than its provider has read`,
          ),
        );
        return;
      }
      if (!this.inboundFull && this.inbound.size >= this.window && this.inboundPressure) {
        this.inboundFull = true;
        this.inboundPressure(true);
      }
    }
    if (end) {
      this.inputClosed = true;
      this.inbound.end();
    }
  }

  private relieve(): void {
    if (!this.inboundFull) return;
    this.inboundFull = false;
    this.inboundPressure?.(false);
  }

  // ── ending ─────────────────────────────────────────────────────────────────────────────────────

  cancel(reason: string): void {
    if (this.end) return;
    const error = cancelError(reason);
    // The provider hears of it before the actor's transition runs (and any GC that transition's
    // allocations set off): the actor still decides the one terminal frame, and finish() aborts no twice.
    this.controller.abort(error);
    this.actor.send({ type: "CANCEL", reason, error });
  }

  fail(error: MigError): void {
    this.actor.send({ type: "FAIL", error });
  }

  private stopReason(): MigError {
    const end = this.end!;
    return end.state === "completed"
      ? new MigError("MIG_INVALID_REQUEST", `stream ${this.streamId} has completed`)
      : end.error;
  }

  /** Called once by the actor's final state: aborts the provider, releases the stream's frames, writes the terminal frame. */
  private finish(end: StreamEnd): void {
    if (this.end) return;
    this.end = end;
    const { core } = this;
    if (end.state !== "completed") this.controller.abort(end.error);
    const reason = this.stopReason();
    for (const waiting of this.pending) waiting.reject(reason);
    core.metrics.bufferedFrames -= this.inTransit + this.pending.length;
    this.pending.length = 0;
    if (end.state === "completed") this.inbound.end();
    else this.inbound.fail(end.error);
    this.relieve();

    core.work.endStream(this.messageId, this);
    core.metrics.streamsActive.dec();
    core.metrics.streams.inc({ capability: this.capability, outcome: end.state });
    if (end.state !== "completed") core.metrics.errors.inc({ code: end.error.code, operation: "stream" });

    const terminal =
      end.state === "completed"
        ? this.frame("response", this.result)
        : end.state === "cancelled"
          ? this.frame("control", { action: "cancel", accepted: true, status: "cancelled", reason: end.reason })
          : { ...this.frame("error"), error: end.error.toJSON() };
    terminal.end_stream = true;
    this.sink.write(terminal, () => undefined);
    this.resolveEnded(end);
  }

  private frame(kind: FrameKind, payload?: JsonObject): StreamFrame {
    this.core.metrics.framesCounted.out++;
    const frame: StreamFrame = {
      header: this.header,
      stream_id: this.streamId,
      capability: this.capability,
      kind,
      end_stream: false,
    };
    if (payload !== undefined) frame.payload = payload;
    return frame;
  }
}
