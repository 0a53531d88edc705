// The WebSocket stream endpoint GET /mig/v0.1/stream: StreamFrame JSON both ways, many streams per socket told apart by stream_id.
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import {
  type Authenticator,
  checkStreamId,
  errorHeader,
  type FrameSink,
  type MigRuntime,
  type Principal,
  parseJsonLimited,
  type RequestContext,
  type StreamSession,
} from "../../runtime/mod.ts";
import { HTTP_STATUS, MigError } from "../../schemas/errors.ts";
import type { StreamFrame } from "../../schemas/types.ts";
import { trackExchange } from "./connection-census.ts";
import { retryAfterSeconds, tryEncodeFrame, UNENCODABLE, unencodableTerminal } from "./respond.ts";
import { type ConnectionGuard, rawErrorAnswer, tooManyConnections } from "./server-limits.ts";

export const STREAM_PATH = "/mig/v0.1/stream";

/** Ended stream ids a connection remembers, to tell "after end_stream" from "unknown". */
const REMEMBERED_ENDS = 1024;
/** A caller that sends bad frames but never reads its error frames is cut off past this many unsent bytes. */
const MAX_UNSENT_BYTES = 8 * 1024 * 1024;
const STREAM_ID = /^[A-Za-z0-9_-]{1,128}$/;
const DOTTED = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export interface StreamEndpoint {
  close(): void;
}

/** Serves WebSocket upgrades of `server` on STREAM_PATH; authentication happens once, at the upgrade. */
export function attachStreamEndpoint(
  server: Server,
  runtime: MigRuntime,
  authenticator: Authenticator,
  connections?: ConnectionGuard,
): StreamEndpoint {
  const limit = runtime.config.maxBodyBytes;
  // Messages between `limit` and maxPayload get an error frame; beyond maxPayload ws closes with 1009.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: Math.max(2 * limit, limit + 1024 * 1024),
    perMessageDeflate: false,
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const named = first(req.headers["x-tenant-id"]);
    if (connections?.refused(socket)) {
      refuseUpgrade(socket, tooManyConnections(runtime.config.httpMaxConnections), named);
      return;
    }
    if (path !== STREAM_PATH) {
      refuseUpgrade(
        socket,
        new MigError("MIG_NOT_FOUND", `no WebSocket endpoint at ${path}; streams are at ${STREAM_PATH}`),
        named,
      );
      return;
    }
    authenticator
      .authenticate({
        authorization: first(req.headers.authorization),
        actor: first(req.headers["x-actor"]),
        binding: "http",
        tenant: named,
        operation: "stream",
      })
      .then((principal) => {
        const tenant = runtime.connectionTenant({ principal, tenant: named, binding: "http" }, "stream");
        wss.handleUpgrade(req, socket, head, (ws) => {
          new StreamConnection(runtime, ws, socket, principal, tenant, limit, runtime.config.wsMaxStreams).listen();
        });
      })
      .catch((err: unknown) => refuseUpgrade(socket, runtime.counted("stream", err), named));
  });

  return {
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
    },
  };
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Answers a refused upgrade with a plain HTTP error envelope, as the JSON routes do. */
function refuseUpgrade(socket: Duplex, error: MigError, tenant: string | undefined): void {
  const retryAfter = retryAfterSeconds(error);
  socket.end(rawErrorAnswer(HTTP_STATUS[error.code], error, tenant, retryAfter ? { "retry-after": retryAfter } : {}));
}

function sizeOf(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}

function textOf(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data as ArrayBuffer).toString("utf8");
}

/** One socket: its live streams by stream_id, and the frames it writes back. */
class StreamConnection {
  private readonly streams = new Map<string, StreamSession>();
  private readonly endedIds = new Set<string>();
  private readonly context: RequestContext;

  constructor(
    private readonly runtime: MigRuntime,
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    principal: Principal,
    private readonly tenant: string | undefined,
    private readonly limit: number,
    private readonly maxStreams: number,
  ) {
    this.context = { principal, tenant, binding: "http" };
  }

  /** Every stream of this socket writes through here; `written` fires when the socket took the frame (a credit). */
  private readonly sink: FrameSink = {
    write: (frame, written) => {
      // A closed socket drops the frame and gives no credit: its streams are being cancelled by onClose.
      if (this.ws.readyState !== WebSocket.OPEN) return;
      const text = tryEncodeFrame(frame) ?? this.unencodable(frame, written);
      if (text === undefined) return;
      if (!this.corked) {
        // The frames written in this tick leave in one socket write, not one syscall each: a provider's
        // burst of a window of frames then takes a fraction of the event loop's turn (and a CANCEL waits less).
        this.corked = true;
        this.socket.cork();
        process.nextTick(this.uncork);
      }
      this.ws.send(text, written); // called with an error too: a credit either way
    },
  };

  /**
   * A frame JSON cannot encode: a data frame fails its stream instead (whose terminal error frame follows
   * through the sink); a terminal frame is replaced by an error frame of the same stream.
   */
  private unencodable(frame: StreamFrame, written: () => void): string | undefined {
    this.runtime.logger.error(
      { stream_id: frame.stream_id, capability: frame.capability },
      "a stream frame could not be encoded as JSON",
    );
    if (frame.end_stream) return unencodableTerminal(frame, this.tenant);
    const session = this.streams.get(frame.stream_id);
    queueMicrotask(() => {
      written();
      session?.fail(new MigError("MIG_INTERNAL", UNENCODABLE));
    });
    return undefined;
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** Streams whose provider has a window of this socket's frames unread: while any has, the socket is not read. */
  private full = 0;
  private readonly pressure = (full: boolean): void => {
    this.full += full ? 1 : -1;
    if (full && this.full === 1) this.ws.pause();
    else if (!full && this.full === 0) this.ws.resume();
  };

  listen(): void {
    // Counted until the socket closes (GET /admin/v0.1/connections).
    trackExchange(this.socket, {
      kind: "websocket",
      tenant_id: this.tenant,
      actor: this.context.principal.subject,
      meta: { max_streams: this.maxStreams },
    });
    this.ws.on("message", (data) => this.onMessage(data));
    this.ws.on("close", () => this.onClose());
    this.ws.on("error", () => undefined); // a close event follows
  }

  private onMessage(data: RawData): void {
    const bytes = sizeOf(data);
    if (bytes > this.limit) {
      const error = new MigError(
        "MIG_INVALID_REQUEST",
        `a frame is larger than ${this.limit} bytes; send smaller frames`,
        {
          details: { max_frame_bytes: this.limit },
        },
      );
      this.refuse(undefined, this.runtime.counted("stream", error));
      return;
    }
    let value: unknown;
    try {
      value = parseJsonLimited(textOf(data), this.runtime.config.maxJsonDepth, "a WebSocket message");
    } catch (err) {
      this.refuse(undefined, this.runtime.counted("stream", err));
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      this.refuse(
        undefined,
        this.runtime.counted(
          "stream",
          new MigError("MIG_INVALID_REQUEST", "a WebSocket message must be one StreamFrame JSON object"),
        ),
      );
      return;
    }
    const frame = value as Record<string, unknown>;
    switch (frame.kind) {
      case "request":
        return this.onRequest(frame, bytes);
      case "control":
        return this.onControl(frame);
      case "response":
      case "event":
      case "error":
        return this.refuseFrame(
          frame,
          new MigError(
            "MIG_INVALID_REQUEST",
            `callers send request and control frames; ${frame.kind} frames come from the server`,
          ),
        );
      default:
        return this.refuseFrame(
          frame,
          new MigError(
            "MIG_INVALID_REQUEST",
            `frame kind ${JSON.stringify(frame.kind)?.slice(0, 40)} is unknown; send request or control`,
          ),
        );
    }
  }

  /** The live stream a frame names, if any; a stream that just ended moves to the ended set. */
  private live(streamId: unknown): StreamSession | undefined {
    if (typeof streamId !== "string") return undefined;
    const session = this.streams.get(streamId);
    if (session?.isOver) {
      this.forget(session);
      return undefined;
    }
    return session;
  }

  private onRequest(frame: Record<string, unknown>, bytes: number): void {
    const streamId = frame.stream_id === "" || frame.stream_id === null ? undefined : frame.stream_id;
    const live = this.live(streamId);
    if (live) {
      // A later request frame of a live stream: the caller's next message (bidi_stream).
      try {
        live.receive(frame.payload, frame.end_stream === true);
      } catch (err) {
        this.refuseFrame(frame, err);
      }
      return;
    }
    if (typeof streamId === "string" && this.endedIds.has(streamId)) {
      this.refuseFrame(
        frame,
        new MigError(
          "MIG_INVALID_REQUEST",
          `stream ${streamId} has ended (end_stream was sent); start a new stream with a new stream_id`,
        ),
      );
      return;
    }
    if (this.openStreams() >= this.maxStreams) {
      const error = new MigError(
        "MIG_BACKPRESSURE",
        `this WebSocket already has ${this.maxStreams} open streams, the most one connection may have; wait for one to end, or open another connection`,
        { details: { max_streams: this.maxStreams } },
      );
      this.refuseFrame(frame, error);
      return;
    }
    let session: StreamSession;
    try {
      if (streamId !== undefined) checkStreamId(streamId);
      session = this.runtime.openStream(
        frame,
        { ...this.context, bodyBytes: bytes },
        {
          sink: this.sink,
          streamId: streamId as string | undefined,
          clientFrames: true,
          inboundPressure: this.pressure,
        },
      );
    } catch (err) {
      this.refuseFrame(frame, err, true);
      return;
    }
    if (this.streams.has(session.streamId)) {
      session.fail(
        new MigError("MIG_INVALID_REQUEST", `stream_id ${session.streamId} is already in use on this connection`),
      );
      return;
    }
    this.streams.set(session.streamId, session);
    const untrack = trackExchange(this.socket, {
      kind: "ws_stream",
      tenant_id: session.tenant,
      actor: session.subject,
      meta: {
        stream_id: session.streamId,
        message_id: session.messageId,
        capability: session.capability,
        mode: session.mode,
      },
    });
    void session.ended.then(() => {
      untrack();
      this.forget(session);
    });
    if (frame.end_stream === true && session.mode === "bidi_stream") session.receive(undefined, true);
  }

  private onControl(frame: Record<string, unknown>): void {
    const payload =
      frame.payload !== null && typeof frame.payload === "object" ? (frame.payload as Record<string, unknown>) : {};
    const action = typeof payload.action === "string" ? payload.action.trim().toLowerCase() : "";
    const live = this.live(frame.stream_id) ?? this.byMessageId(frame);
    if (action !== "cancel") {
      const error = new MigError(
        "MIG_INVALID_REQUEST",
        `control action ${JSON.stringify(payload.action ?? null).slice(0, 40)} is unknown; the one action is "cancel"`,
      );
      if (live) live.fail(error);
      else this.refuseFrame(frame, error);
      return;
    }
    if (live) {
      live.cancel(typeof payload.reason === "string" ? payload.reason.slice(0, 500) : "cancelled by a control frame");
      return;
    }
    if (typeof frame.stream_id === "string" && this.endedIds.has(frame.stream_id)) {
      // Like CANCEL of a finished invocation: not an error, an outcome.
      this.send({
        header: errorHeader(frame, this.tenant),
        stream_id: frame.stream_id,
        capability: this.echoCapability(frame),
        kind: "control",
        payload: { action: "cancel", accepted: false, status: "already_completed" },
        end_stream: true,
      });
      return;
    }
    this.refuseFrame(
      frame,
      new MigError(
        "MIG_NOT_FOUND",
        `no stream ${this.echoStreamId(frame) || "(no stream_id)"} is open on this connection`,
      ),
    );
  }

  /** A control frame without a known stream_id may name the stream by its request's message_id (as the reference does). */
  private byMessageId(frame: Record<string, unknown>): StreamSession | undefined {
    const header = frame.header as Record<string, unknown> | undefined;
    const id = header && typeof header === "object" ? header.message_id : undefined;
    if (typeof id !== "string") return undefined;
    for (const session of this.streams.values()) if (session.messageId === id && !session.isOver) return session;
    return undefined;
  }

  /** Streams of this socket still running (ended ones are forgotten on the way). */
  private openStreams(): number {
    for (const session of this.streams.values()) if (session.isOver) this.forget(session);
    return this.streams.size;
  }

  private forget(session: StreamSession): void {
    if (this.streams.get(session.streamId) !== session) return;
    this.streams.delete(session.streamId);
    this.endedIds.add(session.streamId);
    if (this.endedIds.size > REMEMBERED_ENDS) this.endedIds.delete(this.endedIds.values().next().value!);
  }

  private onClose(): void {
    for (const session of this.streams.values()) session.cancel("the WebSocket closed");
    this.streams.clear();
  }

  /** A bad frame: a live stream it names ends with the error (counted when it ends); otherwise one error frame answers it. */
  private refuseFrame(frame: Record<string, unknown>, err: unknown, counted = false): void {
    const live = this.live(frame.stream_id);
    if (live) {
      live.fail(err instanceof MigError ? err : this.runtime.counted("stream", err));
      return;
    }
    this.refuse(frame, counted && err instanceof MigError ? err : this.runtime.counted("stream", err));
  }

  private refuse(frame: Record<string, unknown> | undefined, error: MigError): void {
    this.send({
      header: errorHeader(frame, this.tenant),
      stream_id: frame ? this.echoStreamId(frame) : "",
      capability: frame ? this.echoCapability(frame) : "",
      kind: "error",
      end_stream: true,
      error: error.toJSON(),
    });
  }

  /** Echo only well-formed ids: an answer never repeats malformed input. */
  private echoStreamId(frame: Record<string, unknown>): string {
    return typeof frame.stream_id === "string" && STREAM_ID.test(frame.stream_id) ? frame.stream_id : "";
  }

  private echoCapability(frame: Record<string, unknown>): string {
    const c = frame.capability;
    return typeof c === "string" && c.length <= 200 && DOTTED.test(c) ? c : "";
  }

  private send(frame: StreamFrame): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.ws.bufferedAmount > MAX_UNSENT_BYTES) {
      this.ws.terminate();
      return;
    }
    let text: string;
    try {
      text = JSON.stringify(frame);
    } catch {
      text = unencodableTerminal(frame, this.tenant);
    }
    this.ws.send(text);
  }
}
