// Streaming profile, streams that run a while (fixture mig.fixture.count on the WebSocket): cancel mid-way, backpressure, deadline.

import { setTimeout as sleep } from "node:timers/promises";
import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { WsSession } from "../ws-client.ts";
import { type FixtureRun, needFixtures, probe, probeUntil } from "./fixture-runs.ts";
import { BASE, FIXTURE, fixtureTag } from "./fixtures.ts";
import { type Frame, waitForFrames } from "./streaming-http.ts";

/** Starts a server_stream of the count fixture on `session`. */
function startCount(
  ctx: CheckContext,
  session: WsSession,
  streamId: string,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = {},
): void {
  session.send({
    header: ctx.header(header),
    stream_id: streamId,
    capability: FIXTURE.count,
    kind: "request",
    payload,
    stream_preference: "server_stream",
  });
}

function cancelFrame(ctx: CheckContext, streamId: string): Record<string, unknown> {
  return {
    header: ctx.header(),
    stream_id: streamId,
    capability: FIXTURE.count,
    kind: "control",
    payload: { action: "cancel", reason: "conformance check" },
  };
}

const responses = (frames: Frame[]) => frames.filter((f) => f.kind === "response" && f.end_stream !== true);
const terminal = (frames: Frame[]) => frames.find((f) => f.end_stream === true);

/** Fails unless the response frames carry index 0, 1, 2, … in order: nothing lost, nothing reordered. */
function ensureInOrder(frames: Frame[]): number {
  const indexes = responses(frames).map((f) => (isRecord(f.payload) ? f.payload.index : undefined));
  const wrong = indexes.findIndex((index, position) => index !== position);
  ensure(wrong < 0, `response frame ${wrong} carries index ${brief(indexes[wrong])}: frames were lost or reordered`);
  return indexes.length;
}

/** Fails unless the probe says the tagged run was aborted, with `code` when given; returns its reason. */
async function ensureAborted(ctx: CheckContext, tag: string, code?: string): Promise<string> {
  const run = await probeUntil(ctx, "http", tag, (r) => r.state !== "running");
  ensure(
    run.state === "aborted",
    `the stream ended, but the provider's work ${run.state === "running" ? "still runs" : `ended ${run.state}`}`,
  );
  if (code) ensure(run.reason === code, `the provider was aborted with ${brief(run.reason)}, expected ${code}`);
  return run.reason ?? "?";
}

const wsCancelMidway = check(
  "STREAM-2",
  "http",
  "ws-cancel-midway",
  "streaming",
  `a control frame {action: "cancel"} for a stream of ${FIXTURE.count} that has sent 3 frames ends it with one terminal frame that is not a response, and the provider's work stops`,
  async (ctx) => {
    await needFixtures(ctx, "http", FIXTURE.count, FIXTURE.probe);
    const session = await ctx.websocket(`${BASE}/stream`);
    const streamId = `conformance-${ctx.runId}-midway`;
    const tag = fixtureTag(ctx.runId, "midway");
    startCount(ctx, session, streamId, { count: 100_000, interval_ms: 20, tag });
    await waitForFrames(ctx, session, streamId, (fs) => responses(fs).length >= 3, "third response frame");
    session.send(cancelFrame(ctx, streamId));
    const frames = await waitForFrames(ctx, session, streamId, (fs) => terminal(fs) !== undefined, "terminal frame");
    const last = terminal(frames) as Frame;
    ensure(frames.indexOf(last) === frames.length - 1, "frames arrived after the terminal frame");
    ensure(last.kind !== "response", `the cancelled stream ended with a response frame ${brief(last.payload)}`);
    const sent = ensureInOrder(frames);
    const reason = await ensureAborted(ctx, tag);
    session.close();
    return `cancelled after ${sent} frames; terminal ${String(last.kind)} frame ${brief(last.payload ?? last.error, 80)}; provider aborted with ${reason}`;
  },
);

/** The backpressure stream: far more bytes than socket buffers hold, so only flow control can stop the provider. */
const FLOOD = { count: 40_000, pad_bytes: 2048 };
const FLOOD_MB = Math.round((FLOOD.count * (FLOOD.pad_bytes + 300)) / 1e6);
/** Probes in a row with the same count of emitted frames that show the provider is held. */
const STEADY_PROBES = 5;

const backpressure = check(
  "STREAM-3",
  "http",
  "backpressure",
  "streaming",
  `a WebSocket consumer that reads nothing while ${FIXTURE.count} streams ${FLOOD.count} frames of ${FLOOD.pad_bytes} bytes holds the provider (it stops emitting short of the end), or the stream ends with MIG_BACKPRESSURE; reading again resumes it in order`,
  async (ctx) => {
    await needFixtures(ctx, "http", FIXTURE.count, FIXTURE.probe);
    const session = await ctx.websocket(`${BASE}/stream`);
    const streamId = `conformance-${ctx.runId}-flood`;
    const tag = fixtureTag(ctx.runId, "flood");
    session.pause();
    startCount(ctx, session, streamId, { ...FLOOD, tag });
    const run = await heldOrEnded(ctx, tag);
    if (run.state === "aborted") {
      session.resume();
      const frames = await waitForFrames(ctx, session, streamId, (fs) => terminal(fs) !== undefined, "terminal frame");
      const last = terminal(frames) as Frame;
      const code = isRecord(last.error) ? last.error.code : undefined;
      ensure(
        last.kind === "error" && code === "MIG_BACKPRESSURE",
        `the stream of a stalled consumer ended with a ${brief(last.kind)} frame ${brief(last.error ?? last.payload)}, not MIG_BACKPRESSURE`,
      );
      ensureInOrder(frames);
      session.close();
      return `the stream ended with MIG_BACKPRESSURE after ${run.emitted} frames`;
    }
    // Held: cancel it, read again, and every frame sent meanwhile must arrive, in order, then the terminal frame.
    session.send(cancelFrame(ctx, streamId));
    session.resume();
    const frames = await waitForFrames(ctx, session, streamId, (fs) => terminal(fs) !== undefined, "terminal frame");
    const read = ensureInOrder(frames);
    ensure(read <= run.emitted, `read ${read} frames, but the provider had emitted ${run.emitted}`);
    session.close();
    return `the provider was held after ${run.emitted} of ${FLOOD.count} frames (~${FLOOD_MB} MB) while the consumer read nothing; read again, frames 0…${read - 1} arrived in order`;
  },
);

/**
 * Probes the flood's run until it is held (the same emitted count STEADY_PROBES times in a row, short of the end)
 * or aborted; fails if the provider ran to the end or was still emitting at the time limit.
 */
async function heldOrEnded(ctx: CheckContext, tag: string): Promise<FixtureRun> {
  const until = Date.now() + 2 * ctx.timeoutMs;
  let last = -1;
  let steady = 0;
  for (;;) {
    const run = await probe(ctx, "http", tag);
    if (run.state === "completed" || run.emitted >= FLOOD.count) {
      fail(
        `the provider emitted all ${FLOOD.count} frames (~${FLOOD_MB} MB) to a consumer that read none: the server buffered them instead of pausing the provider or ending the stream with MIG_BACKPRESSURE`,
      );
    }
    if (run.state === "aborted") return run;
    if (run.state === "running" && run.emitted > 0 && run.emitted === last) {
      if (++steady >= STEADY_PROBES) return run;
    } else {
      steady = 0;
    }
    last = run.emitted;
    if (Date.now() >= until) {
      fail(
        `the provider was still emitting after ${2 * ctx.timeoutMs} ms (${run.emitted} of ${FLOOD.count} frames, state ${run.state}) to a consumer that read none`,
      );
    }
    await sleep(100);
  }
}

const DEADLINE_MS = 500;

const streamDeadline = check(
  "STREAM-4",
  "http",
  "stream-deadline",
  "streaming",
  `a stream of ${FIXTURE.count} (a frame every 50 ms, for minutes) with header.deadline_ms ${DEADLINE_MS} ends with an error frame MIG_TIMEOUT, and the provider's work stops`,
  async (ctx) => {
    await needFixtures(ctx, "http", FIXTURE.count, FIXTURE.probe);
    const session = await ctx.websocket(`${BASE}/stream`);
    const streamId = `conformance-${ctx.runId}-deadline`;
    const tag = fixtureTag(ctx.runId, "stream-deadline");
    startCount(ctx, session, streamId, { count: 100_000, interval_ms: 50, tag }, { deadline_ms: DEADLINE_MS });
    const frames = await waitForFrames(ctx, session, streamId, (fs) => terminal(fs) !== undefined, "terminal frame");
    const last = terminal(frames) as Frame;
    ensure(
      last.kind === "error" && isRecord(last.error) && last.error.code === "MIG_TIMEOUT",
      `the stream ended with a ${brief(last.kind)} frame ${brief(last.error ?? last.payload)}, expected an error frame MIG_TIMEOUT`,
    );
    const reason = await ensureAborted(ctx, tag);
    session.close();
    return `MIG_TIMEOUT after ${responses(frames).length} frames; provider aborted with ${reason}`;
  },
);

export const streamingFlowChecks: Check[] = [wsCancelMidway, backpressure, streamDeadline];
