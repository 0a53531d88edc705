// The invocation actor under misbehaving providers: deadlines, throws, rejections, garbage, hangs, cancel, idempotency.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability } from "../runtime/provider/provider.ts";
import type { CapabilityDescriptor } from "../schemas/types.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

function descriptor(id: string): CapabilityDescriptor {
  return {
    id,
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: "schema://test/any",
    output_schema_uri: "schema://test/out",
    auth_scopes: [],
  };
}

const seen = { hangAborts: [] as unknown[], slowAborts: [] as unknown[], onceRuns: 0, flakyRuns: 0 };

const capabilities = [
  defineCapability(
    descriptor("test.hang"),
    (_p, { signal }) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => {
          seen.hangAborts.push(signal.reason);
          reject(signal.reason);
        });
      }),
  ),
  defineCapability(
    descriptor("test.slow"),
    (_p, { signal }) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ result: "late" }), 60_000);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          seen.slowAborts.push(signal.reason);
        });
      }),
  ),
  defineCapability(descriptor("test.throws"), () => {
    throw new Error("database password is hunter2");
  }),
  defineCapability(descriptor("test.rejects"), async () => {
    throw new TypeError("boom");
  }),
  defineCapability(descriptor("test.garbage"), () => "not an object" as never),
  defineCapability(descriptor("test.wrong-shape"), () => ({ nope: true })),
  defineCapability(descriptor("test.echo"), (payload) => ({ result: "echo", payload })),
  defineCapability(descriptor("test.once"), async (payload) => {
    seen.onceRuns++;
    await new Promise((r) => setTimeout(r, 200));
    return { result: `run ${seen.onceRuns}`, payload };
  }),
  defineCapability(descriptor("test.flaky"), async () => {
    seen.flakyRuns++;
    if (seen.flakyRuns === 1)
      throw new (await import("../schemas/errors.ts")).MigError(
        "MIG_UNAVAILABLE",
        "the backend is warming up; try again",
      );
    return { result: `run ${seen.flakyRuns}` };
  }),
];

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({ capabilities });
  t.runtime.schemas.register("schema://test/any", { type: "object" });
  t.runtime.schemas.register("schema://test/out", { type: "object", required: ["result"] });
});
afterAll(() => t?.stop());

const invoke = (capability: string, extra: Record<string, unknown> = {}, payload: unknown = {}) =>
  t.post(`/mig/v0.1/invoke/${capability}`, { header: { tenant_id: "acme", ...extra }, payload });

describe("deadlines", () => {
  it("a hanging handler ends in MIG_TIMEOUT and its signal fires with that error", async () => {
    const res = await invoke("test.hang", { deadline_ms: 150 });
    expectError(res, 504, "MIG_TIMEOUT");
    expect(res.body.error.retryable).toBe(true);
    expect(seen.hangAborts).toHaveLength(1);
    expect((seen.hangAborts[0] as { code: string }).code).toBe("MIG_TIMEOUT");
  });
});

describe("provider failures are contained", () => {
  it("a throwing handler gives MIG_INTERNAL without leaking its message, and the next call works", async () => {
    const res = await invoke("test.throws");
    expectError(res, 500, "MIG_INTERNAL");
    expect(JSON.stringify(res.body)).not.toContain("hunter2");
    const next = await invoke("test.echo", {}, { n: 1 });
    expect(next.status).toBe(200);
    expect(next.body.payload.payload).toEqual({ n: 1 });
  });

  it("a rejecting handler gives MIG_INTERNAL", async () => {
    expectError(await invoke("test.rejects"), 500, "MIG_INTERNAL");
  });

  it("garbage output gives MIG_INTERNAL that says what was wrong", async () => {
    const garbage = await invoke("test.garbage");
    expectError(garbage, 500, "MIG_INTERNAL");
    expect(garbage.body.error.message).toContain("instead of a JSON object");
    const wrong = await invoke("test.wrong-shape");
    expectError(wrong, 500, "MIG_INTERNAL");
    expect(wrong.body.error.details.errors).toEqual(['payload must have property "result"']);
  });

  it("no actor is left alive after all of that", async () => {
    await waitFor("no live invocation actors", () => t.runtime.supervisor.countOf("invocation") === 0);
    expect(t.runtime.work.invocations.size).toBe(0);
  });
});

describe("CANCEL", () => {
  it("aborts a slow in-flight invocation; its caller gets a terminal answer", async () => {
    const message_id = randomUUID();
    const pending = invoke("test.slow", { message_id });
    await waitFor("the invocation to be in flight", () => t.runtime.work.invocations.has(message_id));
    const ack = await t.post(`/mig/v0.1/cancel/${message_id}`, {
      header: { tenant_id: "acme" },
      reason: "user pressed stop",
    });
    expect(ack.status).toBe(200);
    expectEnvelope("CancelAck", ack.body);
    expect(ack.body).toMatchObject({ accepted: true, status: "cancelled", target_message_id: message_id });
    const res = await pending;
    expectError(res, 504, "MIG_TIMEOUT");
    expect(res.body.error.details).toMatchObject({ cancelled: true, reason: "user pressed stop" });
    expect(res.body.header.message_id).toBe(message_id);
    expect(seen.slowAborts).toHaveLength(1);
  });

  it("refuses to cancel another tenant's invocation, answering as for an unknown id", async () => {
    const message_id = randomUUID();
    const pending = invoke("test.slow", { message_id, deadline_ms: 2000 });
    await waitFor("the invocation to be in flight", () => t.runtime.work.invocations.has(message_id));
    const res = await t.post(`/mig/v0.1/cancel/${message_id}`, { header: { tenant_id: "globex" } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ accepted: false, status: "not_found" });
    expect(t.runtime.work.invocations.has(message_id)).toBe(true);
    await t.post(`/mig/v0.1/cancel/${message_id}`, { header: { tenant_id: "acme" } });
    await pending;
  });
});

describe("idempotency", () => {
  it("runs the handler once under 20 concurrent duplicates, and every caller gets the same result", async () => {
    const key = `order-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => invoke("test.once", { idempotency_key: key }, { item: 7 })),
    );
    expect(seen.onceRuns).toBe(1);
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(res.body.payload).toEqual({ result: "run 1", payload: { item: 7 } });
    }
    const later = await invoke("test.once", { idempotency_key: key }, { item: 7 });
    expect(later.body.payload.result).toBe("run 1");
    expect(seen.onceRuns).toBe(1);
  });

  it("keys are scoped by tenant: the same key for another tenant runs again", async () => {
    const key = `shared-${randomUUID()}`;
    const before = seen.onceRuns;
    await invoke("test.once", { idempotency_key: key });
    await t.post("/mig/v0.1/invoke/test.once", { header: { tenant_id: "globex", idempotency_key: key }, payload: {} });
    expect(seen.onceRuns).toBe(before + 2);
  });

  it("a retryable failure does not stick to the key", async () => {
    const key = `flaky-${randomUUID()}`;
    expectError(await invoke("test.flaky", { idempotency_key: key }), 503, "MIG_UNAVAILABLE");
    const retry = await invoke("test.flaky", { idempotency_key: key });
    expect(retry.status).toBe(200);
    expect(retry.body.payload.result).toBe("run 2");
  });
});

describe("metrics", () => {
  it("shows invocations by outcome, errors by code, latency by capability and tenant, live actors", async () => {
    const slow = randomUUID();
    const pending = invoke("test.slow", { message_id: slow, deadline_ms: 5000 });
    await waitFor("in flight", () => t.runtime.work.invocations.has(slow));
    const text = (await t.get("/metrics")).text;
    expect(text).toMatch(/mig_actors_live\{kind="invocation",state="dispatched"\} 1/);
    expect(text).toMatch(/mig_invocations_total\{capability="test.hang",outcome="timed_out"\} 1/);
    expect(text).toMatch(/mig_invocations_total\{capability="test.slow",outcome="cancelled"\} [1-9]/);
    expect(text).toMatch(/mig_errors_total\{code="MIG_INTERNAL",operation="invoke"\} [1-9]/);
    expect(text).toMatch(/mig_invocation_duration_seconds_count\{capability="test.echo",tenant="acme"\} [1-9]/);
    await t.post(`/mig/v0.1/cancel/${slow}`, { header: { tenant_id: "acme" } });
    await pending;
  });
});

describe("admission control", () => {
  it("past its capacity a runtime answers MIG_BACKPRESSURE, and takes work again once below it", async () => {
    // One tenant may fill it here: the share of each tenant is the subject of the next test.
    const small = await startTestRuntime({ capabilities, config: { capacity: 2, tenantMaxInflight: 2 } });
    try {
      small.runtime.schemas.register("schema://test/any", { type: "object" });
      const ids = [randomUUID(), randomUUID()];
      const pending = ids.map((message_id) =>
        small.post("/mig/v0.1/invoke/test.slow", { header: { tenant_id: "acme", message_id }, payload: {} }),
      );
      await waitFor("two invocations in flight", () => small.runtime.work.invocations.size === 2);
      const shed = await small.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "acme" },
        payload: { input: "x" },
      });
      expectError(shed, 503, "MIG_BACKPRESSURE");
      expect(shed.body.error.retryable).toBe(true);
      const hb = await small.post("/mig/v0.1/heartbeat", { header: { tenant_id: "acme" } });
      expect(hb.body.load_factor).toBeGreaterThanOrEqual(1);
      for (const id of ids) await small.post(`/mig/v0.1/cancel/${id}`, { header: { tenant_id: "acme" } });
      await Promise.all(pending);
      const again = await small.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "acme" },
        payload: { input: "x" },
      });
      expect(again.status).toBe(200);
    } finally {
      await small.stop();
    }
  });

  it("one tenant holds at most its share of the capacity: past it that tenant alone gets MIG_BACKPRESSURE", async () => {
    const small = await startTestRuntime({ capabilities, config: { capacity: 4 } });
    try {
      small.runtime.schemas.register("schema://test/any", { type: "object" });
      const ids = [randomUUID(), randomUUID()];
      const pending = ids.map((message_id) =>
        small.post("/mig/v0.1/invoke/test.slow", { header: { tenant_id: "acme", message_id }, payload: {} }),
      );
      await waitFor("acme's two invocations in flight", () => small.runtime.work.invocations.size === 2);
      // Half of the capacity of 4 is acme's: a third is refused, while globex still gets its answers.
      const third = await small.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "acme" },
        payload: { input: "x" },
      });
      expectError(third, 503, "MIG_BACKPRESSURE");
      expect(third.body.error.details).toMatchObject({ limit_scope: "tenant", limit: 2, inflight: 2 });
      expect(third.body.error.retryable).toBe(true);
      const other = await small.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "globex" },
        payload: { input: "x" },
      });
      expect(other.status).toBe(200);
      for (const id of ids) await small.post(`/mig/v0.1/cancel/${id}`, { header: { tenant_id: "acme" } });
      await Promise.all(pending);
      expect(small.runtime.work.invocationsOf("acme")).toBe(0);
      const again = await small.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "acme" },
        payload: { input: "x" },
      });
      expect(again.status).toBe(200);
    } finally {
      await small.stop();
    }
  });
});
