// A capability whose output cannot be serialized (too deep, a cycle, a BigInt) fails cleanly when it returns, on HTTP
// and NATS; with an idempotency key the failure is recorded, so a retry gets it at once instead of waiting on a pending record.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** The answer must come within this bound; on a pending idempotency record a retry would wait for its whole deadline (30 s). */
const ANSWER_BOUND_MS = 10_000;

const calls = new Map<string, number>();
function unsendable(id: string, make: () => Record<string, unknown>) {
  return defineCapability(
    anyDescriptor(id, ["unary"]),
    () => {
      calls.set(id, (calls.get(id) ?? 0) + 1);
      return make() as never;
    },
    anySchemas,
  );
}

function deepObject(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = {};
  for (let i = 1; i < levels; i++) value = { a: value };
  return value;
}
function cyclic(): Record<string, unknown> {
  const value: Record<string, unknown> = { name: "loop" };
  value.self = value;
  return value;
}

const CASES: [capability: string, what: RegExp][] = [
  ["test.out.deep", /deeper than 64 levels/],
  ["test.out.cycle", /refers to itself/],
  ["test.out.bigint", /BigInt/],
];

let t: TestRuntime;
let nats: NatsBinding;
let nc: NatsConnection;

beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [
      unsendable("test.out.deep", () => deepObject(5_000)),
      unsendable("test.out.cycle", cyclic),
      unsendable("test.out.bigint", () => ({ n: 10n })),
    ],
  });
  nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  nc = await natsClient(t.runtime.natsUrl);
});
afterAll(async () => {
  await nc?.close();
  await nats?.close();
  await t?.stop();
});

/** One INVOKE over `binding`, answered within ANSWER_BOUND_MS; the error body. */
async function invoke(
  binding: "http" | "nats",
  capability: string,
  header: Record<string, unknown>,
  payload: object = {},
): Promise<{ status?: number; body: any }> {
  const body = { header: { tenant_id: "acme", ...header }, payload };
  if (binding === "nats") {
    const answer = await natsRequest(nc, `mig.v0_1.acme.invoke.${capability}`, body, {}, ANSWER_BOUND_MS);
    return { body: answer.body };
  }
  const res = await fetch(`${t.http.url}/mig/v0.1/invoke/${capability}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ANSWER_BOUND_MS),
  });
  return { status: res.status, body: JSON.parse(await res.text()) };
}

function expectUnsendable(answer: { status?: number; body: any }, capability: string, what: RegExp): void {
  if (answer.status !== undefined) expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(500);
  expectEnvelope("ErrorEnvelope", answer.body);
  expect(answer.body.error.code).toBe("MIG_INTERNAL");
  expect(answer.body.error.retryable).toBe(false);
  expect(answer.body.error.message).toContain(`capability ${capability} returned an output that cannot be sent`);
  expect(answer.body.error.message).toMatch(what);
}

describe.each(["http", "nats"] as const)("over %s", (binding) => {
  it.each(CASES)("%s: a clean MIG_INTERNAL, and the binding keeps serving", async (capability, what) => {
    expectUnsendable(await invoke(binding, capability, {}), capability, what);
    const ok = await invoke(binding, "observatory.models.infer", {}, { input: "still serving" });
    expect(ok.body.error).toBeUndefined();
  });

  it.each(CASES)(
    "%s with an idempotency key: the failure is recorded, a retry gets it without running the capability again",
    async (capability, what) => {
      const key = `unsendable-${randomUUID()}`;
      const first = await invoke(binding, capability, { idempotency_key: key });
      const ran = calls.get(capability);
      const retry = await invoke(binding, capability, { idempotency_key: key });
      expect(calls.get(capability)).toBe(ran);
      expectUnsendable(first, capability, what);
      expectUnsendable(retry, capability, what);
    },
  );
});
