// Streaming profile over HTTP: StreamFrames on the WebSocket endpoint GET /mig/v0.1/stream.

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { WsSession } from "../ws-client.ts";
import { BASE, INFER, INFER_PAYLOAD } from "./fixtures.ts";

export type Frame = Record<string, unknown>;

function framesOf(session: WsSession, streamId: string): Frame[] {
  return session.frames.items.filter((f): f is Frame => isRecord(f) && f.stream_id === streamId);
}

/** Waits for `predicate` over the frames of one stream; fails with what did arrive when it does not hold in time. */
export async function waitForFrames(
  ctx: CheckContext,
  session: WsSession,
  streamId: string,
  predicate: (frames: Frame[]) => boolean,
  what: string,
): Promise<Frame[]> {
  const ok = await session.frames.waitFor(() => predicate(framesOf(session, streamId)), ctx.timeoutMs);
  const frames = framesOf(session, streamId);
  for (const frame of frames) {
    ctx.record("http", "WS frame", frame);
    ctx.validate("StreamFrame", frame, `frame ${brief(frame.kind)}`);
  }
  if (!ok) {
    const others = session.frames.items.filter((f) => !frames.includes(f as Frame));
    const why = session.frames.failure ? ` (${session.frames.failure.message})` : "";
    fail(
      `no ${what} for stream_id ${streamId} within ${ctx.timeoutMs} ms${why}; ` +
        `got ${frames.length} frames for it${others.length ? ` and ${others.length} others: ${brief(others[0], 100)}` : ""}`,
    );
  }
  return frames;
}

const wsInvoke = check(
  "STREAM-1",
  "http",
  "ws-invoke",
  "streaming",
  `a WebSocket request frame for ${INFER} is answered by frames carrying its stream_id, the last with end_stream: true`,
  async (ctx) => {
    const session = await ctx.websocket(`${BASE}/stream`);
    const streamId = `conformance-${ctx.runId}-invoke`;
    session.send({
      header: ctx.header(),
      stream_id: streamId,
      capability: INFER,
      kind: "request",
      payload: INFER_PAYLOAD,
    });
    const frames = await waitForFrames(
      ctx,
      session,
      streamId,
      (fs) => fs.some((f) => f.end_stream === true),
      "terminal frame",
    );
    const last = frames.find((f) => f.end_stream === true) as Frame;
    ensure(last.kind !== "error", `the stream ended with an error frame: ${brief(last.error)}`);
    ensure(
      frames.some((f) => f.kind === "response"),
      `no response frame among kinds ${brief(frames.map((f) => f.kind))}`,
    );
    session.close();
    return `${frames.length} frames`;
  },
);

const wsUnknownKind = convention(
  "the standard names the request and control frames only; an error frame with MIG_INVALID_REQUEST for any other kind is the reference gateway's answer",
  check(
    "STREAM-1",
    "http",
    "ws-unknown-kind",
    "streaming",
    "a WebSocket frame of unknown kind gets an error frame with MIG_INVALID_REQUEST",
    async (ctx) => {
      const session = await ctx.websocket(`${BASE}/stream`);
      const streamId = `conformance-${ctx.runId}-bogus`;
      session.send({ header: ctx.header(), stream_id: streamId, capability: INFER, kind: "bogus", payload: {} });
      const frames = await waitForFrames(ctx, session, streamId, (fs) => fs.length > 0, "frame");
      const frame = frames[0] as Frame;
      ensure(frame.kind === "error", `the answer is a ${brief(frame.kind)} frame, expected "error"`);
      ensure(isRecord(frame.error) && frame.error.code === "MIG_INVALID_REQUEST", `error is ${brief(frame.error)}`);
      session.close();
    },
  ),
);

const wsCancel = check(
  "STREAM-2",
  "http",
  "ws-cancel",
  "streaming",
  'a control frame {action: "cancel"} for a stream is acknowledged by a control frame, and the stream ends',
  async (ctx) => {
    const session = await ctx.websocket(`${BASE}/stream`);
    const streamId = `conformance-${ctx.runId}-cancel`;
    session.send({
      header: ctx.header(),
      stream_id: streamId,
      capability: INFER,
      kind: "request",
      payload: INFER_PAYLOAD,
    });
    session.send({
      header: ctx.header(),
      stream_id: streamId,
      capability: INFER,
      kind: "control",
      payload: { action: "cancel" },
    });
    const frames = await waitForFrames(
      ctx,
      session,
      streamId,
      (fs) => fs.some((f) => f.kind === "control") && fs.some((f) => f.end_stream === true),
      "control acknowledgement and terminal frame",
    );
    const ack = frames.find((f) => f.kind === "control") as Frame;
    session.close();
    return `ack payload ${brief(ack.payload, 80)}`;
  },
);

export const streamingHttpChecks: Check[] = [wsInvoke, wsUnknownKind, wsCancel];
