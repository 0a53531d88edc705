// Fair turns on a saturated runtime: a tenant with many operations in flight runs a few at a time while another
// tenant is active (here: has a call running), and that tenant's work starts at once. Saturation is declared always (MIG_FAIR_BUSY_UTILISATION=0)
// so that the test does not depend on this machine's speed; test/bench/flood.ts measures the real thing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

/** Calls of the held capability in the order they started, with a way to let each one finish. */
const started: { tenant: string; n: number; finish: () => void }[] = [];
const held = defineCapability(
  anyDescriptor("test.fair.held", ["unary"]),
  (payload, context) =>
    new Promise((resolve) =>
      started.push({
        tenant: context.header.tenant_id,
        n: Number(payload.n),
        finish: () => resolve({ n: payload.n }),
      }),
    ),
  anySchemas,
);
const quick = defineCapability(anyDescriptor("test.fair.quick", ["unary"]), () => ({ ok: true }), anySchemas);

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({
    config: { tenantFairInflight: 2, fairBusyUtilisation: 0, fairWaitMs: 60_000 },
    capabilities: [held, quick],
  });
});
afterAll(async () => {
  for (const s of started) s.finish();
  await t?.stop();
});

const invoke = (tenant: string, capability: string, payload: object = {}) =>
  t.post(`/mig/v0.1/invoke/${capability}`, { payload, header: { deadline_ms: 60_000 } }, { "x-tenant-id": tenant });
const startedBy = (tenant: string) => started.filter((s) => s.tenant === tenant);

describe("fair turns on a saturated runtime", () => {
  it("a tenant runs its turn's worth at once while another is active; the other's work starts at once; the rest start in order as its own finish", async () => {
    // globex is active while its call runs, however slowly this machine gets to the next line.
    const globexHeld = invoke("globex", "test.fair.held", { n: 99 });
    await waitFor("globex's call to run", () => startedBy("globex").length === 1);
    const acme = Array.from({ length: 6 }, (_, n) => invoke("acme", "test.fair.held", { n }));
    await waitFor("acme's turn to start", () => startedBy("acme").length === 2);
    // Quick work of acme waits behind its own held calls too: turns count operations, not capabilities.
    const acmeQuick = invoke("acme", "test.fair.quick");
    const globex = invoke("globex", "test.fair.held", { n: 100 });
    await waitFor("globex's second call to start", () => startedBy("globex").length === 2);
    expect(startedBy("acme")).toHaveLength(2);
    expect(t.runtime.fairShare.runningOf("acme")).toBe(2);

    startedBy("acme")[0]!.finish();
    await waitFor("acme's next call", () => startedBy("acme").length === 3);
    expect(startedBy("acme").map((s) => s.n)).toEqual([0, 1, 2]);
    for (const s of startedBy("globex")) s.finish();
    expect((await globex).status).toBe(200);
    expect((await globexHeld).status).toBe(200);
    for (let i = 1; i < 6; i++) {
      startedBy("acme")[i]!.finish();
      if (i < 4) await waitFor(`acme's call ${i + 3}`, () => startedBy("acme").length === i + 3);
    }
    expect((await acmeQuick).status).toBe(200);
    const answers = await Promise.all(acme);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(startedBy("acme").map((s) => s.n)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(t.runtime.fairShare.runningOf("acme")).toBe(0);
  });

  it("a tenant alone takes every turn: once the others have no call running and sent none for a second, its waiting calls all start", async () => {
    started.length = 0;
    const globex = invoke("globex", "test.fair.held", { n: 99 });
    await waitFor("globex's call to run", () => startedBy("globex").length === 1);
    const acme = Array.from({ length: 5 }, (_, n) => invoke("acme", "test.fair.held", { n }));
    await waitFor("acme's turn to start", () => startedBy("acme").length === 2);
    startedBy("globex")[0]!.finish();
    expect((await globex).status).toBe(200);
    await waitFor("the rest, once globex is quiet", () => startedBy("acme").length === 5, 5_000);
    for (const s of startedBy("acme")) s.finish();
    expect((await Promise.all(acme)).map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it("a call that waits longer than MIG_FAIR_WAIT_MS (or its deadline) is answered MIG_BACKPRESSURE, and the runtime serves on", async () => {
    started.length = 0;
    const globex = invoke("globex", "test.fair.held", { n: 99 });
    await waitFor("globex's call to run", () => startedBy("globex").length === 1);
    const first = [0, 1].map((n) => invoke("acme", "test.fair.held", { n }));
    await waitFor("acme's turn to start", () => startedBy("acme").length === 2);
    const late = await t.post(
      "/mig/v0.1/invoke/test.fair.quick",
      { payload: {}, header: { deadline_ms: 200 } },
      { "x-tenant-id": "acme" },
    );
    expect(late.status).toBe(503);
    expect(late.body.error).toMatchObject({
      code: "MIG_BACKPRESSURE",
      retryable: true,
      details: { limit: 2, limit_scope: "tenant_fair_share", retry_after_ms: 200 },
    });
    expect(late.body.error.message).toContain("MIG_TENANT_FAIR_INFLIGHT");
    expect((await invoke("globex", "test.fair.quick")).status).toBe(200);
    for (const s of started) s.finish();
    expect((await Promise.all([globex, ...first])).map((a) => a.status)).toEqual([200, 200, 200]);
    const waits = await t.runtime.metrics.fairShareWaits.get();
    expect(waits.values.find((v) => v.labels.outcome === "refused")?.value).toBe(1);
  });

  it("PUBLISH takes turns too", async () => {
    started.length = 0;
    const globex = invoke("globex", "test.fair.held", { n: 99 });
    await waitFor("globex's call to run", () => startedBy("globex").length === 1);
    const first = [0, 1].map((n) => invoke("acme", "test.fair.held", { n }));
    await waitFor("acme's turn to start", () => startedBy("acme").length === 2);
    let answered = false;
    const publish = t
      .post("/mig/v0.1/publish/acme.orders", { payload: { n: 1 } }, { "x-tenant-id": "acme" })
      .finally(() => (answered = true));
    const other = await t.post("/mig/v0.1/publish/globex.orders", { payload: { n: 1 } }, { "x-tenant-id": "globex" });
    expect(other.status).toBe(200);
    expect(answered).toBe(false);
    startedBy("acme")[0]!.finish();
    expect((await publish).status).toBe(200);
    startedBy("acme")[1]!.finish();
    startedBy("globex")[0]!.finish();
    await Promise.all([globex, ...first]);
  });
});
