// Server-sent events for POST /mig/v0.1/invoke/{capability} with stream_preference server_stream: one event per StreamFrame.
import type { ServerResponse } from "node:http";
import type { FrameSink, MigRuntime, RequestContext, StreamSession } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import { trackExchange } from "./connection-census.ts";
import { tryEncodeFrame, UNENCODABLE, unencodableTerminal } from "./respond.ts";

/** True when an invoke body asks for a stream; the runtime decides whether it may have one. */
export function wantsStream(body: unknown): boolean {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return false;
  const preference = (body as { stream_preference?: unknown }).stream_preference;
  return preference === "server_stream" || preference === "bidi_stream";
}

/**
 * Opens the stream and answers with `text/event-stream`: each frame is `event: mig-frame` and
 * `data: <StreamFrame JSON>`; the last has `end_stream: true`, then the response ends. A refused
 * request throws before anything is written, so the caller answers it with a JSON error envelope.
 */
export function serveStream(
  runtime: MigRuntime,
  res: ServerResponse,
  body: unknown,
  context: RequestContext,
  capability: string | undefined,
): void {
  const open = () => {
    if (res.headersSent) return;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" });
  };
  let session: StreamSession | undefined;
  const sink: FrameSink = {
    write(frame, written) {
      // A gone consumer drops the frame and gives no credit: the close handler below cancels the stream.
      if (res.destroyed || res.writableEnded) return;
      let text = tryEncodeFrame(frame);
      if (text === undefined) {
        runtime.logger.error(
          { stream_id: frame.stream_id, capability: frame.capability },
          "a stream frame could not be encoded as JSON",
        );
        if (!frame.end_stream) {
          // The stream fails instead; its terminal error frame comes through here next.
          queueMicrotask(() => {
            written();
            session?.fail(new MigError("MIG_INTERNAL", UNENCODABLE));
          });
          return;
        }
        text = unencodableTerminal(frame, context.tenant);
      }
      open();
      res.write(`event: mig-frame\ndata: ${text}\n\n`, () => written());
      if (frame.end_stream) res.end();
    },
  };
  const opened = runtime.openStream(body, context, { sink, capability, clientFrames: false });
  session = opened;
  const untrack = trackExchange(res.socket, {
    kind: "sse_stream",
    tenant_id: opened.tenant,
    actor: opened.subject,
    meta: {
      stream_id: opened.streamId,
      message_id: opened.messageId,
      capability: opened.capability,
      mode: opened.mode,
    },
  });
  void opened.ended.then(untrack);
  open();
  res.flushHeaders();
  res.on("close", () => {
    if (!opened.isOver) opened.cancel("the SSE connection closed");
  });
}
