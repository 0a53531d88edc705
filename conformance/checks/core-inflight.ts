// Core profile, work in flight: INVOKE's deadline_ms is enforced, and CANCEL stops an invocation that is running (HTTP, gRPC).

import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { brief, ensure, fail, MIG_ERROR_CODES } from "../assert.ts";
import { type Check, check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import { type GrpcAnswer, jsonStruct } from "../grpc-client.ts";
import { type FixtureBinding, grpcHeader, needFixtures, probeUntil } from "./fixture-runs.ts";
import { BASE, FIXTURE, fixtureTag, invokePath, longDelayMs } from "./fixtures.ts";

const SHORT_DEADLINE_MS = 300;

/** A promise that never rejects: a request started now and awaited later must not be an unhandled rejection. */
function settled<T>(promise: Promise<T>): Promise<{ value: T } | { error: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

/** Waits until the probe says the tagged run has started (so a CANCEL reaches work in flight). */
async function started(ctx: CheckContext, binding: FixtureBinding, tag: string): Promise<void> {
  const run = await probeUntil(ctx, binding, tag, (r) => r.state !== "unknown");
  ensure(run.state === "running", `the ${FIXTURE.slow} run never showed as running (probe: ${brief(run)})`);
}

/** Fails unless the probe says the tagged run was aborted (its work stopped), and returns the code it was aborted with. */
async function stopped(ctx: CheckContext, binding: FixtureBinding, tag: string, by: string): Promise<string> {
  const run = await probeUntil(ctx, binding, tag, (r) => r.state !== "running");
  ensure(
    run.state === "aborted",
    `${by} was answered, but the provider's work ${run.state === "running" ? "is still running" : `ended ${run.state}`}`,
  );
  return run.reason ?? "?";
}

const invokeDeadlineEnforced = check(
  "CORE-3",
  "http",
  "invoke-deadline-enforced",
  "core",
  `INVOKE ${FIXTURE.slow} (a long delay) with header.deadline_ms ${SHORT_DEADLINE_MS} ends with MIG_TIMEOUT, and the provider's work stops`,
  async (ctx) => {
    await needFixtures(ctx, "http", FIXTURE.slow, FIXTURE.probe);
    const tag = fixtureTag(ctx.runId, "deadline");
    const answer = await ctx
      .post(invokePath(FIXTURE.slow), {
        header: ctx.header({ deadline_ms: SHORT_DEADLINE_MS }),
        payload: { delay_ms: longDelayMs(ctx.timeoutMs), tag },
      })
      .catch((err: unknown) =>
        fail(`${err instanceof Error ? err.message : String(err)} (deadline_ms ${SHORT_DEADLINE_MS} was not enforced)`),
      );
    ctx.expectError(answer, { codes: ["MIG_TIMEOUT"] });
    const reason = await stopped(ctx, "http", tag, "the timed-out INVOKE");
    return `the provider was aborted with ${reason}`;
  },
);

const cancelInFlightHttp = check(
  "CORE-4",
  "http",
  "cancel-in-flight",
  "core",
  `CANCEL of a running INVOKE of ${FIXTURE.slow} is acknowledged (accepted, "cancelled"), the INVOKE ends at once with an error, and the provider's work stops`,
  async (ctx) => {
    await needFixtures(ctx, "http", FIXTURE.slow, FIXTURE.probe);
    const tag = fixtureTag(ctx.runId, "cancel-http");
    const messageId = randomUUID();
    const delayMs = longDelayMs(ctx.timeoutMs);
    const invoking = settled(
      ctx.post(invokePath(FIXTURE.slow), {
        header: ctx.header({ message_id: messageId, deadline_ms: delayMs }),
        payload: { delay_ms: delayMs, tag },
      }),
    );
    let cancelled = false;
    try {
      await started(ctx, "http", tag);
      const ack = ctx.expectSuccess(
        await ctx.post(`${BASE}/cancel/${messageId}`, {
          header: ctx.header(),
          target_message_id: messageId,
          reason: "conformance check",
        }),
        "CancelAck",
      );
      cancelled = true;
      ensure(
        ack.accepted === true && ack.status === "cancelled",
        `CANCEL of the running invocation answered accepted ${brief(ack.accepted)}, status ${brief(ack.status)}`,
      );
      const outcome = await invoking;
      if ("error" in outcome) {
        const why = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
        fail(`the cancelled INVOKE did not end: ${why}`);
      }
      // The standard names no code for a cancelled invocation's answer: any standard code is its terminal signal.
      const error = ctx.expectError(outcome.value, { codes: MIG_ERROR_CODES });
      const reason = await stopped(ctx, "http", tag, "the cancelled INVOKE");
      return `the INVOKE ended with ${String(error.code)}; the provider was aborted with ${reason}`;
    } finally {
      if (!cancelled) await cancelQuietly(ctx, messageId);
    }
  },
);

/** Leaves no fixture running after a check that failed before its CANCEL. */
async function cancelQuietly(ctx: CheckContext, messageId: string): Promise<void> {
  await ctx.http
    .post(`${BASE}/cancel/${messageId}`, { header: ctx.header(), target_message_id: messageId, reason: "cleanup" })
    .catch(() => undefined);
}

const cancelInFlightGrpc = check(
  "CORE-4",
  "grpc",
  "cancel-in-flight",
  "core",
  `Control.Cancel of a running Invocation.Invoke of ${FIXTURE.slow} is accepted, the Invoke ends at once with an error status, and the provider's work stops`,
  async (ctx) => {
    await needFixtures(ctx, "grpc", FIXTURE.slow, FIXTURE.probe);
    const tag = fixtureTag(ctx.runId, "cancel-grpc");
    const messageId = randomUUID();
    const delayMs = longDelayMs(ctx.timeoutMs);
    const invoking: Promise<GrpcAnswer> = ctx.grpc.call("Invocation", "Invoke", {
      header: grpcHeader(ctx, { message_id: messageId, deadline_ms: delayMs }),
      capability: FIXTURE.slow,
      payload: jsonStruct({ delay_ms: delayMs, tag }),
    });
    await started(ctx, "grpc", tag);
    const ack = await ctx.grpc.call("Control", "Cancel", {
      header: grpcHeader(ctx),
      target_message_id: messageId,
      reason: "conformance check",
    });
    if (!ack.ok) fail(`${ack.method} failed: ${status[ack.error.code] ?? ack.error.code} ${brief(ack.error.details)}`);
    ensure(
      ack.value.accepted === true && ack.value.status === "cancelled",
      `Control.Cancel of the running invocation answered accepted ${brief(ack.value.accepted)}, status ${brief(ack.value.status)}`,
    );
    const outcome = await invoking;
    if (outcome.ok) fail(`the cancelled Invoke answered ${brief(outcome.value)}`);
    ensure(
      !(outcome.error.code === status.DEADLINE_EXCEEDED && /^deadline exceeded/i.test(outcome.error.details)),
      `the cancelled Invoke did not end before the harness's own deadline of ${ctx.timeoutMs} ms`,
    );
    const reason = await stopped(ctx, "grpc", tag, "the cancelled Invoke");
    return `the Invoke ended with ${status[outcome.error.code]} ${brief(outcome.error.details, 60)}; the provider was aborted with ${reason}`;
  },
);

export const coreInflightHttpChecks: Check[] = [invokeDeadlineEnforced, cancelInFlightHttp];
export const coreInflightGrpcChecks: Check[] = [cancelInFlightGrpc];
