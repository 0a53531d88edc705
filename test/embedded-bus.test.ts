// The embedded nats-server is supervised: killed with SIGKILL, it comes back and invocations work again.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(() => t?.stop());

const INVOKE = "/mig/v0.1/invoke/observatory.models.infer";

describe("embedded bus", () => {
  it("restarts nats-server after SIGKILL; bus-backed invocations work again and the restart is counted", async () => {
    const launcher = t.runtime.launcher!;
    const firstPid = launcher.pid!;
    const before = await t.post(INVOKE, {
      header: { tenant_id: "acme", idempotency_key: "k1" },
      payload: { input: "a" },
    });
    expect(before.status).toBe(200);

    process.kill(firstPid, "SIGKILL");
    await waitFor(
      "nats-server to come back with a new pid",
      () => launcher.pid !== undefined && launcher.pid !== firstPid,
      15_000,
    );

    // Idempotent invocations go through the JetStream KV bucket, so they prove the bus is usable again.
    const after = await waitFor(
      "an idempotent invocation to succeed",
      async () => {
        const res = await t.post(INVOKE, {
          header: { tenant_id: "acme", idempotency_key: randomUUID() },
          payload: { input: "b" },
        });
        return res.status === 200 ? res : undefined;
      },
      15_000,
    );
    expect(after.body.payload.echo).toEqual({ input: "b" });

    // The record written before the crash survived it (file storage in the data directory).
    const repeat = await t.post(INVOKE, {
      header: { tenant_id: "acme", idempotency_key: "k1" },
      payload: { input: "a" },
    });
    expect(repeat.body.payload).toEqual(before.body.payload);

    const metrics = (await t.get("/metrics")).text;
    expect(metrics).toMatch(/mig_supervisor_restarts_total\{child="nats-server"\} 1/);
  });
});
