// Finding the fixture capabilities a check needs (DISCOVER over the check's binding) and asking the probe what became of a tagged run.

import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import { brief, fail, isRecord, skip } from "../assert.ts";
import type { CheckContext } from "../context.ts";
import { stringStruct } from "../grpc-client.ts";
import { BASE, FIXTURE, invokePath } from "./fixtures.ts";

/** The wires a fixture is looked up and probed over. */
export type FixtureBinding = "http" | "nats" | "grpc";

export interface FixtureRun {
  state: "running" | "completed" | "aborted" | "unknown";
  emitted: number;
  reason?: string;
}

/** SKIPs the check unless DISCOVER over `binding` lists every one of `ids` (one DISCOVER per binding and run). */
export async function needFixtures(ctx: CheckContext, binding: FixtureBinding, ...ids: string[]): Promise<void> {
  const listed = await ctx.memo(`discover-ids-${binding}`, () => discoverIds(ctx, binding));
  const missing = ids.filter((id) => !listed.includes(id));
  if (missing.length > 0) {
    skip(
      `needs the fixture ${missing.length === 1 ? "capability" : "capabilities"} ${missing.join(", ")} ` +
        `(docs/conformance.md, "Fixtures"), which DISCOVER over ${binding} does not list`,
    );
  }
}

async function discoverIds(ctx: CheckContext, binding: FixtureBinding): Promise<string[]> {
  let capabilities: unknown;
  if (binding === "http") {
    const answer = await ctx.post(`${BASE}/discover`, { header: ctx.header() });
    capabilities = ctx.expectSuccess(answer, "DiscoverResponse").capabilities;
  } else if (binding === "nats") {
    const answer = await ctx.natsRequest(`mig.v0_1.${ctx.tenant}.discover`, { header: ctx.header() });
    capabilities = isRecord(answer.body) ? answer.body.capabilities : undefined;
  } else {
    const answer = await ctx.grpc.call("Discovery", "Discover", { header: grpcHeader(ctx) });
    if (!answer.ok) fail(`${answer.method} failed: ${brief(answer.error.details)}`);
    capabilities = answer.value.capabilities;
  }
  if (!Array.isArray(capabilities)) fail(`DISCOVER over ${binding} answered no capabilities list`);
  return capabilities.map((d) => (isRecord(d) ? String(d.id) : "")).filter(Boolean);
}

/** The proto header the gRPC checks send (the smoke client's), with extra fields. */
export function grpcHeader(ctx: CheckContext, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { tenant_id: ctx.tenant, mig_version: "0.1", ...extra };
}

/** What the probe fixture says of the run tagged `tag` (of this tenant). */
export async function probe(ctx: CheckContext, binding: FixtureBinding, tag: string): Promise<FixtureRun> {
  let payload: unknown;
  if (binding === "http") {
    const answer = await ctx.post(invokePath(FIXTURE.probe), { header: ctx.header(), payload: { tag } });
    payload = ctx.expectSuccess(answer, "InvokeResponse").payload;
  } else if (binding === "nats") {
    const answer = await ctx.natsRequest(`mig.v0_1.${ctx.tenant}.invoke.${FIXTURE.probe}`, {
      header: ctx.header(),
      payload: { tag },
    });
    payload = isRecord(answer.body) ? answer.body.payload : undefined;
  } else {
    const answer = await ctx.grpc.call("Invocation", "Invoke", {
      header: grpcHeader(ctx),
      capability: FIXTURE.probe,
      payload: stringStruct({ tag }),
    });
    if (!answer.ok)
      fail(`${FIXTURE.probe} over gRPC failed: ${status[answer.error.code]} ${brief(answer.error.details)}`);
    payload = structToJson(answer.value.payload);
  }
  if (!isRecord(payload) || typeof payload.state !== "string")
    fail(`${FIXTURE.probe} answered ${brief(payload)}, not {state, emitted}`);
  return {
    state: payload.state as FixtureRun["state"],
    emitted: typeof payload.emitted === "number" ? payload.emitted : 0,
    ...(typeof payload.reason === "string" ? { reason: payload.reason } : {}),
  };
}

/** Probes until `done(run)` holds or `timeoutMs` passes; returns the last answer either way. */
export async function probeUntil(
  ctx: CheckContext,
  binding: FixtureBinding,
  tag: string,
  done: (run: FixtureRun) => boolean,
): Promise<FixtureRun> {
  const until = Date.now() + ctx.timeoutMs;
  for (;;) {
    const run = await probe(ctx, binding, tag);
    if (done(run) || Date.now() >= until) return run;
    await sleep(50);
  }
}

/** A google.protobuf.Struct as received with proto-loader (`oneofs`), as plain JSON. */
export function structToJson(struct: unknown): Record<string, unknown> | undefined {
  if (!isRecord(struct) || !isRecord(struct.fields)) return undefined;
  return Object.fromEntries(Object.entries(struct.fields).map(([key, value]) => [key, valueToJson(value)]));
}

function valueToJson(value: unknown): unknown {
  if (!isRecord(value)) return undefined;
  switch (value.kind) {
    case "stringValue":
      return value.stringValue;
    case "numberValue":
      return value.numberValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return structToJson(value.structValue);
    case "listValue":
      return isRecord(value.listValue) && Array.isArray(value.listValue.values)
        ? value.listValue.values.map(valueToJson)
        : [];
    default:
      return null;
  }
}
