// Checks over the NATS binding: the standard's own NATS smoke requests (hello, discover, invoke), an error reply, HEARTBEAT, PUBLISH.

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { NatsAnswer } from "../nats-client.ts";
import type { EnvelopeName } from "../types.ts";
import { INFER, INFER_PAYLOAD, UNKNOWN_CAPABILITY } from "./fixtures.ts";

export function subject(ctx: CheckContext, ...tokens: string[]): string {
  return ["mig", "v0_1", ctx.tenant, ...tokens].join(".");
}

/** The smoke tool's test: a JSON reply without an `error` key; plus the envelope's schema. */
export function expectReply(ctx: CheckContext, answer: NatsAnswer, envelope: EnvelopeName): Record<string, unknown> {
  const body = answer.body;
  if (!isRecord(body)) fail(`reply on ${answer.subject} is not a JSON object: ${brief(answer.text)}`);
  if ("error" in body) fail(`reply on ${answer.subject} is an error: ${brief(body.error)}`);
  ctx.validate(envelope, body, `reply on ${answer.subject}`);
  return body;
}

const hello = check(
  "NATS-1",
  "nats",
  "hello",
  "core",
  'request on mig.v0_1.<tenant>.hello offering ["0.1"] gets a HelloResponse without an error',
  async (ctx) => {
    const answer = await ctx.natsRequest(subject(ctx, "hello"), {
      header: { tenant_id: ctx.tenant },
      supported_versions: ["0.1"],
      requested_bindings: ["nats"],
    });
    const body = expectReply(ctx, answer, "HelloResponse");
    ensure(body.selected_version === "0.1", `selected_version is ${brief(body.selected_version)}, expected "0.1"`);
  },
);

const discover = check(
  "NATS-1",
  "nats",
  "discover",
  "core",
  "request on mig.v0_1.<tenant>.discover gets a DiscoverResponse without an error",
  async (ctx) => {
    const answer = await ctx.natsRequest(subject(ctx, "discover"), { header: { tenant_id: ctx.tenant } });
    const body = expectReply(ctx, answer, "DiscoverResponse");
    ensure(
      Array.isArray(body.capabilities) && body.capabilities.length > 0,
      `capabilities is ${brief(body.capabilities)}`,
    );
  },
);

const invoke = check(
  "NATS-2",
  "nats",
  "invoke",
  "core",
  `request on mig.v0_1.<tenant>.invoke.${INFER} with {"input":"health-check"} gets an InvokeResponse without an error`,
  async (ctx) => {
    const answer = await ctx.natsRequest(subject(ctx, "invoke", INFER), {
      header: { tenant_id: ctx.tenant },
      payload: INFER_PAYLOAD,
    });
    const body = expectReply(ctx, answer, "InvokeResponse");
    ensure(body.capability === INFER, `capability is ${brief(body.capability)}, expected ${INFER}`);
  },
);

const invokeUnknown = check(
  "NATS-2",
  "nats",
  "invoke-unknown-capability",
  "core",
  "request on mig.v0_1.<tenant>.invoke.<unknown> gets an error envelope with MIG_UNSUPPORTED_CAPABILITY or MIG_NOT_FOUND",
  async (ctx) => {
    const answer = await ctx.natsRequest(subject(ctx, "invoke", UNKNOWN_CAPABILITY), {
      header: { tenant_id: ctx.tenant },
      payload: INFER_PAYLOAD,
    });
    const body = answer.body;
    if (!isRecord(body) || !isRecord(body.error) || !isRecord(body.header)) {
      fail(`reply on ${answer.subject} is not a {header, error} envelope: ${brief(answer.text)}`);
    }
    ensure(
      body.error.code === "MIG_UNSUPPORTED_CAPABILITY" || body.error.code === "MIG_NOT_FOUND",
      `error code is ${brief(body.error.code)}`,
    );
    ctx.validate("ErrorEnvelope", body, `reply on ${answer.subject}`);
    return String(body.error.code);
  },
);

const publishAck = check(
  "EVENT-1",
  "nats",
  "publish-ack",
  "evented",
  "request on mig.v0_1.<tenant>.events.<topic> gets a PublishAck for that topic",
  async (ctx) => {
    const topic = `conformance.${ctx.runId}.nats`;
    const answer = await ctx.natsRequest(subject(ctx, "events", topic), {
      header: { tenant_id: ctx.tenant },
      payload: { n: 1 },
    });
    const body = expectReply(ctx, answer, "PublishAck");
    ensure(body.topic === topic, `topic is ${brief(body.topic)}, expected ${topic}`);
    ensure(body.accepted === true, `accepted is ${brief(body.accepted)}`);
  },
);

const heartbeat = check(
  "FULL-4",
  "nats",
  "heartbeat-ack",
  "core",
  "request on mig.v0_1.<tenant>.control.heartbeat with interval_ms gets a HeartbeatAck with suggested_interval_ms >= 1 and a load_factor",
  async (ctx) => {
    const answer = await ctx.natsRequest(subject(ctx, "control", "heartbeat"), {
      header: { tenant_id: ctx.tenant },
      interval_ms: 5000,
    });
    const body = expectReply(ctx, answer, "HeartbeatAck");
    const interval = body.suggested_interval_ms;
    ensure(Number.isInteger(interval) && (interval as number) >= 1, `suggested_interval_ms is ${brief(interval)}`);
    ensure(typeof body.load_factor === "number", `load_factor is ${brief(body.load_factor)}`);
    return `suggested_interval_ms ${interval}, load_factor ${body.load_factor}`;
  },
);

export const coreNatsChecks: Check[] = [hello, discover, invoke, invokeUnknown, heartbeat];
export const eventedNatsChecks: Check[] = [publishAck];
