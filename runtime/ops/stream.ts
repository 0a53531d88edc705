// Streaming INVOKE as an operation: a stream request is checked like a unary INVOKE (names, capability, mode,
// policy, payload schema), then runtime/flow/stream-session.ts runs it.
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, StreamMode } from "../../schemas/types.ts";
import type { Span } from "../base/tracing.ts";
import type { RuntimeCore } from "../core.ts";
import { checkStreamId, type FrameSink, StreamSession } from "../flow/stream-session.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import type { AcceptedStream, RegisteredCapability } from "../provider/registry.ts";
import { acceptInvocation } from "./invocation-request.ts";

export interface OpenStreamOptions {
  sink: FrameSink;
  /** The stream id the caller chose; `stream-<message_id>` when it chose none (as the standard's reference does). */
  streamId?: string | undefined;
  /** The capability named by the transport (a path segment), if any; the body may name it too, and must agree. */
  capability?: string | undefined;
  /** Whether this binding carries the caller's frames after the request (WebSocket yes, SSE no). */
  clientFrames: boolean;
  /** Set by a worker for a stream its gateway already authorized (policy, quota and audit happened there). */
  authorized?: boolean | undefined;
  /** The capability version to run, set by a worker: the one its gateway chose (and the one the worker serves). */
  version?: string | undefined;
  /**
   * The time the stream has left, when less than its header's `deadline_ms` (a worker taking a stream
   * later than its caller sent it); the frames keep the caller's header.
   */
  deadlineMs?: number | undefined;
  /**
   * Called with true when the caller's frames pile up (a window's worth unread by the provider) and
   * with false once the provider has read them all: a binding stops and resumes reading its socket.
   */
  inboundPressure?: ((full: boolean) => void) | undefined;
  /** The stream's span, when tracing is on (runtime/ops/stream-span.ts). */
  span?: Span | undefined;
}

/**
 * Checks a stream request from an InvokeRequest-shaped body (a WebSocket request frame, an SSE invoke)
 * like a unary INVOKE: names, capability, mode, policy, payload schema. Throws the MigError to answer.
 */
export function acceptStream(
  core: RuntimeCore,
  body: unknown,
  request: RequestContext,
  options: Omit<OpenStreamOptions, "sink">,
): AcceptedStream {
  // The same checks, in the same order, as a unary INVOKE: policy, mode, payload.
  const { header, entry, mode, payload } = acceptInvocation(core, body, request, {
    capability: options.capability,
    where: "the frame or in the path",
    authorized: options.authorized,
    version: options.version,
    chooseMode: (raw, entry) => chooseMode(raw, entry, options.clientFrames),
  });

  const streamId = options.streamId === undefined ? `stream-${header.message_id}` : checkStreamId(options.streamId);
  if (core.work.has(header.message_id)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `message_id ${header.message_id} is already in flight; give every invocation its own UUID`,
    );
  }
  return { header, entry, principal: request.principal, mode, payload, streamId, span: options.span };
}

/**
 * Opens a stream: checks it (acceptStream), then starts its actor and its provider. Synchronous on
 * purpose, so a binding can route the caller's next frame to the stream before any other I/O happens.
 */
export function openStream(
  core: RuntimeCore,
  body: unknown,
  request: RequestContext,
  options: OpenStreamOptions,
): StreamSession {
  return startSession(core, acceptStream(core, body, request, options), options);
}

/** Starts the actor and the provider of an accepted stream, its frames going to `options.sink`. */
export function startSession(core: RuntimeCore, accepted: AcceptedStream, options: OpenStreamOptions): StreamSession {
  const { entry, header, principal, mode, streamId, payload } = accepted;
  const session = new StreamSession(
    core,
    entry,
    header,
    principal,
    mode,
    streamId,
    options.sink,
    options.inboundPressure,
    options.deadlineMs,
  );
  session.start(payload, accepted.span);
  return session;
}

function chooseMode(raw: JsonObject, entry: RegisteredCapability, clientFrames: boolean): StreamMode {
  const { id, modes } = entry.descriptor;
  const preference = raw.stream_preference;
  let mode: StreamMode;
  // An empty string is "unset", as in a unary INVOKE (runtime/ops/invoke.ts).
  if (preference === undefined || preference === null || preference === "") {
    // A WebSocket request frame need not say: the richest mode the capability and the binding share.
    if (clientFrames && modes.includes("bidi_stream")) mode = "bidi_stream";
    else if (modes.includes("server_stream")) mode = "server_stream";
    else
      throw new MigError(
        "MIG_UNSUPPORTED_CAPABILITY",
        `capability ${id} does not stream; it offers ${modes.join(", ")}: invoke it with POST /mig/v0.1/invoke/${id}`,
      );
  } else if (preference === "server_stream" || preference === "bidi_stream") {
    if (!modes.includes(preference)) {
      throw new MigError(
        "MIG_UNSUPPORTED_CAPABILITY",
        `capability ${id} does not offer ${preference}; it offers ${modes.join(", ")}`,
      );
    }
    mode = preference;
  } else if (preference === "unary") {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `stream_preference unary is not a stream: invoke ${id} with POST /mig/v0.1/invoke/${id}`,
    );
  } else {
    throw new MigError("MIG_INVALID_REQUEST", "stream_preference must be one of unary, server_stream, bidi_stream");
  }
  if (mode === "bidi_stream" && !clientFrames) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `bidi_stream needs a binding that carries the caller's frames: use the WebSocket GET /mig/v0.1/stream`,
    );
  }
  if (!entry.stream) {
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${id} declares ${mode} but its provider has no stream handler here`,
    );
  }
  return mode;
}
