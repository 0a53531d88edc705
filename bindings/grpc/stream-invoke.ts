// Invocation.StreamInvoke: one bidi call is one stream; StreamFrames both ways, credit from HTTP/2's write completions.
//
// The first frame of a call is a `request` frame and opens the stream through runtime.openStream
// (every rule is the runtime's). Later `request` frames are the caller's messages (bidi_stream),
// `control` frames with `{"action":"cancel"}` cancel it, and the client's half-close ends its input.
// Every frame written back carries the stream's stream_id; the last has end_stream and is followed
// by status OK. A first frame that cannot open a stream ends the call with the MIG error's status
// (as a unary call would); a bad frame of a live stream ends the stream with an error frame.
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Authenticator, FrameSink, MigRuntime, RequestContext, StreamSession } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, MessageHeader, StreamFrame } from "../../schemas/types.ts";
import { credentialsOf, deadlineAtOf, endedByDeadline, mergeHeaderFields, tenantOf } from "./metadata.ts";
import { decodedBody } from "./proto.ts";
import { statusFor } from "./status.ts";
import type { StreamingCalls } from "./streaming-calls.ts";
import { toProto } from "./translate.ts";

type Call = ServerDuplexStream<unknown, unknown>;
type ProtoObject = Record<string, unknown>;

/** Serves one StreamInvoke call. */
export function serveStreamInvoke(
  runtime: MigRuntime,
  authenticator: Authenticator,
  call: Call,
  open: StreamingCalls,
): void {
  const streamCall = new StreamCall(runtime, authenticator, call);
  const end = (reason: string) => streamCall.shutdown(reason);
  open.add(end);
  const forget = () => open.delete(end);
  call.once("finish", forget);
  call.once("cancelled", forget);
  streamCall.start();
}

class StreamCall {
  private session: StreamSession | undefined;
  /** The call has been answered with a status (a refused first frame) or cancelled: frames are ignored. */
  private over = false;
  /** The caller closed its half of a bidi stream (end_stream or half-close). */
  private inputEnded = false;
  private context!: RequestContext;
  private readonly tenant: string | undefined;
  private readonly deadlineAt: number;
  /** Every frame of a stream carries the same header object: its proto form is made once. */
  private readonly headers = new WeakMap<MessageHeader, ProtoObject>();

  constructor(
    private readonly runtime: MigRuntime,
    private readonly authenticator: Authenticator,
    private readonly call: Call,
  ) {
    this.tenant = tenantOf(call.metadata);
    this.deadlineAt = deadlineAtOf(call);
  }

  start(): void {
    const { call } = this;
    call.on("cancelled", () => this.onCancelled());
    call.on("error", () => undefined); // a write after the client went away; 'cancelled' handles it
    this.authenticator
      .authenticate({ ...credentialsOf(call.metadata), binding: "grpc", tenant: this.tenant, operation: "stream" })
      .then((principal) => {
        if (this.over) return;
        this.context = { principal, tenant: this.tenant, binding: "grpc" };
        if (Number.isFinite(this.deadlineAt)) this.context.deadlineAt = this.deadlineAt;
        // Reading starts only now, so no frame is taken before the caller is known.
        call.on("data", (message: unknown) => this.onMessage(message));
        call.on("end", () => this.onHalfClose());
      })
      .catch((err: unknown) => this.refuse(undefined, err));
  }

  /** Frames go out through the call; a frame's write callback (HTTP/2 took its bytes) is its credit. */
  private readonly sink: FrameSink = {
    write: (frame, written) => {
      // A call that went away takes no frames and gives no credit: its stream is being cancelled.
      if (this.call.destroyed || this.call.writableEnded) return;
      this.call.write(this.encode(frame), () => written());
    },
  };

  private encode(frame: StreamFrame): ProtoObject {
    let header = this.headers.get(frame.header);
    if (header === undefined) this.headers.set(frame.header, (header = toProto(frame.header as unknown as JsonObject)));
    const { header: _header, ...rest } = frame;
    const out = toProto(rest as unknown as JsonObject);
    out.header = header;
    return out;
  }

  /** While the provider has a window of the caller's frames unread, the call is not read (HTTP/2 flow control does the rest). */
  private readonly pressure = (full: boolean): void => {
    if (full) this.call.pause();
    else this.call.resume();
  };

  private onMessage(message: unknown): void {
    if (this.over) return;
    const live = this.session && !this.session.isOver ? this.session : undefined;
    if (this.session && !live) return; // the stream ended; the call is ending with it
    let frame: JsonObject;
    try {
      frame = decodedBody(message, this.runtime.config.maxJsonDepth, "a frame");
    } catch (err) {
      if (live) this.fail(live, err);
      else this.refuse(undefined, err);
      return;
    }
    if (!live) return this.open(frame);
    if (frame.stream_id !== undefined && frame.stream_id !== live.streamId) {
      this.fail(
        live,
        new MigError(
          "MIG_INVALID_REQUEST",
          `this call carries stream ${live.streamId}; start another stream with another call`,
        ),
      );
      return;
    }
    switch (frame.kind) {
      case "request":
        if (this.inputEnded)
          return this.fail(
            live,
            new MigError(
              "MIG_INVALID_REQUEST",
              `stream ${live.streamId} received a frame after the caller's end_stream`,
            ),
          );
        if (frame.end_stream === true) this.inputEnded = true;
        try {
          live.receive(frame.payload, frame.end_stream === true);
        } catch (err) {
          this.fail(live, err);
        }
        return;
      case "control":
        return this.onControl(live, frame);
      default:
        this.fail(live, kindError(frame.kind));
    }
  }

  private open(frame: JsonObject): void {
    if (frame.kind !== "request") {
      this.refuse(
        frame,
        frame.kind === "control"
          ? new MigError(
              "MIG_INVALID_REQUEST",
              "no stream is open on this call yet; its first frame must be a request frame",
            )
          : kindError(frame.kind),
      );
      return;
    }
    mergeHeaderFields(this.call.metadata, frame);
    let session: StreamSession;
    try {
      session = this.runtime.openStream(frame, this.context, {
        sink: this.sink,
        streamId: frame.stream_id as string | undefined,
        clientFrames: true,
        inboundPressure: this.pressure,
      });
    } catch (err) {
      this.refuse(frame, err, true); // openStream counted it
      return;
    }
    this.session = session;
    void session.ended.then(() => {
      this.call.resume(); // let a paused call's remaining frames drain so the client's writes finish
      if (!this.call.destroyed && !this.call.writableEnded) this.call.end();
    });
    if (frame.end_stream === true && session.mode === "bidi_stream") {
      this.inputEnded = true;
      session.receive(undefined, true);
    }
  }

  private onControl(live: StreamSession, frame: JsonObject): void {
    const payload = (frame.payload ?? {}) as JsonObject;
    const action = typeof payload.action === "string" ? payload.action.trim().toLowerCase() : "";
    if (action !== "cancel") {
      const shown = JSON.stringify(payload.action ?? null).slice(0, 40);
      this.fail(
        live,
        new MigError("MIG_INVALID_REQUEST", `control action ${shown} is unknown; the one action is "cancel"`),
      );
      return;
    }
    live.cancel(typeof payload.reason === "string" ? payload.reason.slice(0, 500) : "cancelled by a control frame");
  }

  /** The client half-closed: the end of a bidi stream's input; before any frame, a call with nothing to do. */
  private onHalfClose(): void {
    if (this.over) return;
    const live = this.session && !this.session.isOver ? this.session : undefined;
    if (!this.session) {
      this.refuse(
        undefined,
        new MigError(
          "MIG_INVALID_REQUEST",
          "the call ended its input without a request frame; send a request frame first",
        ),
      );
      return;
    }
    if (live && live.mode === "bidi_stream" && !this.inputEnded) {
      this.inputEnded = true;
      live.receive(undefined, true);
    }
  }

  private onCancelled(): void {
    this.over = true;
    const live = this.session && !this.session.isOver ? this.session : undefined;
    // At its deadline grpc-js ends the call too; the stream's own deadline (the call's) ends the work.
    if (live && !endedByDeadline(this.deadlineAt)) live.cancel("the gRPC client cancelled the call");
  }

  /** The server is stopping: a live stream is cancelled (its terminal frame says why), a call without one is refused. */
  shutdown(reason: string): void {
    const live = this.session && !this.session.isOver ? this.session : undefined;
    if (live) live.cancel(reason);
    else if (!this.session) this.refuse(undefined, new MigError("MIG_UNAVAILABLE", reason));
  }

  /** Ends a live stream with an error frame; the stream counts its error when it ends. */
  private fail(live: StreamSession, err: unknown): void {
    live.fail(err instanceof MigError ? err : this.runtime.counted("stream", err));
  }

  /** Ends the call with the status of a MIG error: the first frame could not open a stream. */
  private refuse(frame: JsonObject | undefined, err: unknown, counted = false): void {
    if (this.over) return;
    this.over = true;
    const error = counted && err instanceof MigError ? err : this.runtime.counted("stream", err);
    this.call.emit("error", statusFor(error, frame, this.tenant));
  }
}

function kindError(kind: unknown): MigError {
  return kind === "response" || kind === "event" || kind === "error"
    ? new MigError(
        "MIG_INVALID_REQUEST",
        `callers send request and control frames; ${String(kind)} frames come from the server`,
      )
    : new MigError("MIG_INVALID_REQUEST", "a frame's kind must be FRAME_KIND_REQUEST or FRAME_KIND_CONTROL");
}
