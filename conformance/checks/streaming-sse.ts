// Streaming profile over SSE: POST /mig/v0.1/invoke/{capability} with stream_preference "server_stream" answers text/event-stream frames.

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import { INFER, INFER_PAYLOAD, invokePath } from "./fixtures.ts";

const sseInvoke = convention(
  "the standard's OpenAPI answers INVOKE with application/json only; an SSE answer to stream_preference \"server_stream\" is this runtime's (docs/streaming.md)",
  check(
    "STREAM-1",
    "http",
    "sse-invoke",
    "streaming",
    `POST invoke/${INFER} with stream_preference "server_stream" answers text/event-stream: StreamFrames of one stream_id, exactly one terminal frame (end_stream, not an error), last, then the answer ends`,
    async (ctx) => {
      const sub = ctx.postStream(invokePath(INFER), {
        header: ctx.header(),
        payload: INFER_PAYLOAD,
        stream_preference: "server_stream",
      });
      // Until the answer ends: the server closes it after the terminal frame.
      await sub.events.waitFor(() => false, ctx.timeoutMs);
      if (sub.status === undefined) fail(`no answer within ${ctx.timeoutMs} ms`);
      if (sub.status !== 200 || !sub.contentType?.startsWith("text/event-stream")) {
        fail(`answered ${sub.status} ${sub.contentType || "(no content-type)"}: ${brief(sub.errorText)}`);
      }
      ensure(sub.events.done, `the event stream was still open ${ctx.timeoutMs} ms after the request`);
      const frames: Record<string, unknown>[] = [];
      for (const event of sub.events.items) {
        let frame: unknown;
        try {
          frame = JSON.parse(event.data);
        } catch {
          fail(`SSE data is not JSON: ${brief(event.data)}`);
        }
        ctx.record("http", `SSE invoke/${INFER}`, frame);
        ctx.validate("StreamFrame", frame, `SSE event ${brief(event.event)}`);
        if (isRecord(frame)) frames.push(frame);
      }
      ensure(frames.length > 0, "the event stream ended without a frame");
      const ids = new Set(frames.map((f) => f.stream_id));
      ensure(ids.size === 1 && typeof frames[0]?.stream_id === "string", `frames carry stream_ids ${brief([...ids])}`);
      const ends = frames.map((f, i) => (f.end_stream === true ? i : -1)).filter((i) => i >= 0);
      ensure(
        ends.length === 1 && ends[0] === frames.length - 1,
        `end_stream is set on frames ${brief(ends)} of ${frames.length}; expected the last only`,
      );
      const last = frames.at(-1) as Record<string, unknown>;
      ensure(last.kind !== "error", `the stream ended with an error frame: ${brief(last.error)}`);
      const names = [...new Set(sub.events.items.map((e) => e.event))];
      return `${frames.length} frames, SSE event ${names.join(", ")}`;
    },
  ),
);

export const streamingSseChecks: Check[] = [sseInvoke];
