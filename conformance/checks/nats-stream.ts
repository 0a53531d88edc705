// Streaming profile over NATS: a stream started on mig.v0_1.<tenant>.control.stream sends its frames on mig.v0_1.<tenant>.stream.<stream_id>.

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import { INFER, INFER_PAYLOAD } from "./fixtures.ts";
import { subject } from "./nats.ts";

const CREDIT = 64;

const streamSubjects = convention(
  "the standard says a control message starts a stream and frames flow on mig.v0_1.<tenant>.stream.<stream_id>, but names no start subject and no flow control; control.stream and credit frames on inbound_subject are this runtime's (docs/streaming.md)",
  check(
    "STREAM-1",
    "nats",
    "stream-subjects",
    "streaming",
    `a stream of ${INFER} started on mig.v0_1.<tenant>.control.stream (with credit on its inbound_subject) sends StreamFrames on mig.v0_1.<tenant>.stream.<stream_id>, the last with end_stream and not an error`,
    async (ctx) => {
      const streamId = `conformance-${ctx.runId}-nats`;
      const frames = await ctx.natsSubscribe(subject(ctx, "stream", streamId));
      const answer = await ctx.natsRequest(subject(ctx, "control", "stream"), {
        header: ctx.header(),
        capability: INFER,
        payload: INFER_PAYLOAD,
        stream_id: streamId,
        stream_preference: "server_stream",
      });
      const body = answer.body;
      if (!isRecord(body) || "error" in body) fail(`the start on ${answer.subject} answered ${brief(answer.text)}`);
      ensure(
        body.stream_id === streamId,
        `the start answered stream_id ${brief(body.stream_id)}, asked for ${streamId}`,
      );
      ensure(typeof body.inbound_subject === "string", `the start answered no inbound_subject: ${brief(body)}`);
      (await ctx.nats()).publish(body.inbound_subject, {
        header: ctx.header(),
        stream_id: streamId,
        kind: "control",
        payload: { action: "credit", credit: CREDIT },
      });
      const ended = await frames.messages.waitFor(
        (ms) => ms.some((m) => isRecord(m.body) && m.body.end_stream === true),
        ctx.timeoutMs,
      );
      const received = frames.messages.items.map((m) => m.body).filter(isRecord);
      for (const frame of received) {
        ctx.record("nats", `NATS ${frames.subject}`, frame);
        ctx.validate("StreamFrame", frame, `frame on ${frames.subject}`);
      }
      frames.close();
      ensure(ended, `no frame with end_stream on ${frames.subject} within ${ctx.timeoutMs} ms; got ${received.length}`);
      ensure(
        received.every((f) => f.stream_id === streamId),
        `frames carry stream_ids ${brief([...new Set(received.map((f) => f.stream_id))])}`,
      );
      const last = received.at(-1) as Record<string, unknown>;
      ensure(last.end_stream === true, "frames arrived after the terminal frame");
      ensure(last.kind !== "error", `the stream ended with an error frame: ${brief(last.error)}`);
      ensure(
        received.some((f) => f.kind === "response"),
        `no response frame among kinds ${brief(received.map((f) => f.kind))}`,
      );
      return `${received.length} frames`;
    },
  ),
);

export const streamingNatsChecks: Check[] = [streamSubjects];
