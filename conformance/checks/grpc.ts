// Checks over the gRPC binding: the standard's own gRPC smoke calls (Hello, Discover, Invoke), the status of an error, Control, StreamInvoke, and replay over Events.

import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { brief, ensure, fail } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { GrpcAnswer } from "../grpc-client.ts";
import { stringStruct } from "../grpc-client.ts";
import { INFER, INFER_PAYLOAD, UNKNOWN_CAPABILITY } from "./fixtures.ts";

function header(ctx: CheckContext): Record<string, unknown> {
  return { tenant_id: ctx.tenant, mig_version: "0.1" };
}

function expectOk(answer: GrpcAnswer): Record<string, unknown> {
  if (!answer.ok)
    fail(`${answer.method} failed: ${status[answer.error.code] ?? answer.error.code} ${brief(answer.error.details)}`);
  return answer.value;
}

const hello = check(
  "GRPC-2",
  "grpc",
  "hello",
  "core",
  'Discovery.Hello offering "0.1" and BINDING_TYPE_GRPC selects version "0.1"',
  async (ctx) => {
    const answer = await ctx.grpc.call("Discovery", "Hello", {
      header: header(ctx),
      supported_versions: ["0.1"],
      requested_bindings: ["BINDING_TYPE_GRPC"],
    });
    const body = expectOk(answer);
    ensure(body.selected_version === "0.1", `selected_version is ${brief(body.selected_version)}, expected "0.1"`);
    return `selected_binding ${String(body.selected_binding)}`;
  },
);

const discover = check(
  "GRPC-2",
  "grpc",
  "discover",
  "core",
  "Discovery.Discover lists at least one capability",
  async (ctx) => {
    const body = expectOk(await ctx.grpc.call("Discovery", "Discover", { header: header(ctx) }));
    ensure(
      Array.isArray(body.capabilities) && body.capabilities.length > 0,
      `capabilities is ${brief(body.capabilities)}`,
    );
  },
);

const invoke = check(
  "GRPC-2",
  "grpc",
  "invoke",
  "core",
  `Invocation.Invoke ${INFER} with {"input":"health-check"} answers with a capability`,
  async (ctx) => {
    const body = expectOk(
      await ctx.grpc.call("Invocation", "Invoke", {
        header: header(ctx),
        capability: INFER,
        payload: stringStruct(INFER_PAYLOAD),
      }),
    );
    ensure(typeof body.capability === "string" && body.capability !== "", `capability is ${brief(body.capability)}`);
  },
);

const invokeUnknown = convention(
  'the gRPC status per MIG code (NOT_FOUND) and the message "<CODE>: <message>" are the reference gateway\'s; the standard names neither',
  check(
    "GRPC-2",
    "grpc",
    "error-status",
    "core",
    'Invoke of an unknown capability ends with NOT_FOUND and the message "MIG_UNSUPPORTED_CAPABILITY: …" (or MIG_NOT_FOUND)',
    async (ctx) => {
      const answer = await ctx.grpc.call("Invocation", "Invoke", {
        header: header(ctx),
        capability: UNKNOWN_CAPABILITY,
        payload: stringStruct({}),
      });
      if (answer.ok) fail(`${answer.method} of ${UNKNOWN_CAPABILITY} answered ${brief(answer.value)}`);
      ensure(
        answer.error.code === status.NOT_FOUND,
        `status is ${status[answer.error.code] ?? answer.error.code}, expected NOT_FOUND`,
      );
      ensure(
        /^MIG_(UNSUPPORTED_CAPABILITY|NOT_FOUND): /.test(answer.error.details),
        `status message is ${brief(answer.error.details)}; expected "<CODE>: <message>"`,
      );
    },
  ),
);

const controlCancel = check(
  "GRPC-2",
  "grpc",
  "control-cancel",
  "core",
  "Control.Cancel of a message id answers a CancelAck naming that id, with a boolean accepted and a status",
  async (ctx) => {
    const target = randomUUID();
    const ack = expectOk(
      await ctx.grpc.call("Control", "Cancel", {
        header: header(ctx),
        target_message_id: target,
        reason: "conformance check",
      }),
    );
    ensure(
      ack.target_message_id === target,
      `target_message_id is ${brief(ack.target_message_id)}, expected ${target}`,
    );
    ensure(typeof ack.accepted === "boolean", `accepted is ${brief(ack.accepted)}`);
    ensure(typeof ack.status === "string" && ack.status !== "", `status is ${brief(ack.status)}`);
    return `accepted ${ack.accepted}, status ${ack.status}`;
  },
);

const controlHeartbeat = check(
  "FULL-4",
  "grpc",
  "heartbeat-ack",
  "core",
  "Control.Heartbeat with interval_ms answers a HeartbeatAck with suggested_interval_ms >= 1 and a load_factor",
  async (ctx) => {
    const ack = expectOk(await ctx.grpc.call("Control", "Heartbeat", { header: header(ctx), interval_ms: 5000 }));
    const interval = ack.suggested_interval_ms;
    ensure(Number.isInteger(interval) && (interval as number) >= 1, `suggested_interval_ms is ${brief(interval)}`);
    ensure(typeof ack.load_factor === "number", `load_factor is ${brief(ack.load_factor)}`);
    return `suggested_interval_ms ${interval}, load_factor ${ack.load_factor}`;
  },
);

export const coreGrpcChecks: readonly Check[] = [
  hello,
  discover,
  invoke,
  invokeUnknown,
  controlCancel,
  controlHeartbeat,
];

const streamInvoke = check(
  "STREAM-1",
  "grpc",
  "stream-invoke",
  "streaming",
  `Invocation.StreamInvoke of ${INFER} (one request frame, then half-close) answers frames that all carry one stream_id, the last with end_stream, then status OK`,
  async (ctx) => {
    const answer = await ctx.grpc.stream(
      "Invocation",
      "StreamInvoke",
      [{ header: header(ctx), capability: INFER, kind: "FRAME_KIND_REQUEST", payload: stringStruct(INFER_PAYLOAD) }],
      () => false,
    );
    if (answer.error)
      fail(`${answer.method} failed: ${status[answer.error.code] ?? answer.error.code} ${brief(answer.error.details)}`);
    ensure(answer.code === status.OK, `the call ended with status ${brief(answer.code)}, expected OK`);
    const frames = answer.messages;
    ensure(frames.length > 0, "no frame arrived");
    const ids = new Set(frames.map((f) => f.stream_id));
    ensure(
      ids.size === 1 && typeof frames[0]!.stream_id === "string" && frames[0]!.stream_id !== "",
      `frames carry stream_ids ${brief([...ids])}`,
    );
    const ends = frames.map((f, i) => (f.end_stream === true ? i : -1)).filter((i) => i >= 0);
    ensure(
      ends.length === 1 && ends[0] === frames.length - 1,
      `end_stream is set on frames ${brief(ends)} of ${frames.length}; expected the last only`,
    );
    const last = frames.at(-1)!;
    ensure(
      last.kind === "FRAME_KIND_RESPONSE",
      `the last frame is ${brief(last.kind)} ${brief(last.error)}, expected FRAME_KIND_RESPONSE`,
    );
    return `${frames.length} frames`;
  },
);

const replayFromCursor = check(
  "EVENT-4",
  "grpc",
  "replay-from-cursor",
  "evented",
  "Events.Publish three events, then Events.Subscribe from the first one's sequence: the later two, in order, with replay true",
  async (ctx) => {
    const topic = `conformance.${ctx.runId}.grpc-replay`;
    const acks: Record<string, unknown>[] = [];
    for (let n = 1; n <= 3; n++) {
      const ack = expectOk(
        await ctx.grpc.call("Events", "Publish", {
          header: header(ctx),
          topic,
          payload: stringStruct({ n: String(n) }),
        }),
      );
      ensure(ack.accepted === true && typeof ack.event_id === "string", `PublishAck is ${brief(ack)}`);
      acks.push(ack);
    }
    const ids = acks.map((a) => a.event_id);
    const answer = await ctx.grpc.stream(
      "Events",
      "Subscribe",
      { header: header(ctx), topic, resume_cursor: String(acks[0]!.sequence) },
      (messages) => messages.some((m) => m.event_id === ids[2]),
    );
    if (answer.error)
      fail(`${answer.method} failed: ${status[answer.error.code] ?? answer.error.code} ${brief(answer.error.details)}`);
    const ours = answer.messages.filter((m) => ids.includes(m.event_id));
    ensure(
      JSON.stringify(ours.map((m) => m.event_id)) === JSON.stringify(ids.slice(1)),
      `events arrived as ${brief(ours.map((m) => m.event_id))}, expected ${brief(ids.slice(1))}`,
    );
    ensure(
      ours.every((m) => m.replay === true),
      `replay flags ${brief(ours.map((m) => m.replay))}`,
    );
  },
);

export const streamingGrpcChecks: readonly Check[] = [streamInvoke];
export const eventedGrpcChecks: readonly Check[] = [replayFromCursor];
