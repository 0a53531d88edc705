// A NATS INVOKE carries its deadline in the MIG header (deadline_ms): when it passes, the invocation is cancelled,
// the provider's signal fires and the capacity it held is free again.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const aborted: unknown[] = [];
/** Runs until its signal fires (or far longer than any deadline here). */
const waits = defineCapability(
  anyDescriptor("test.deadline.waits", ["unary"]),
  (_payload, { signal }) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ finished: true }), 120_000);
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          aborted.push(signal.reason);
        },
        { once: true },
      );
    }),
  anySchemas,
);
const quick = defineCapability(anyDescriptor("test.deadline.quick", ["unary"]), () => ({ ok: true }), anySchemas);

let t: TestRuntime;
let binding: NatsBinding;
let nc: NatsConnection;

beforeAll(async () => {
  // Room for one invocation: the next one is admitted only once the first has let go of its place.
  t = await startTestRuntime({ capabilities: [waits, quick], config: { capacity: 1 } });
  binding = await startNatsBinding(t.runtime, t.runtime.authenticator);
  nc = await natsClient(t.runtime.natsUrl);
});
afterAll(async () => {
  await nc?.close();
  await binding?.close();
  await t?.stop();
});

describe("deadline_ms of a NATS INVOKE", () => {
  it("cancels the invocation when it passes: MIG_TIMEOUT, the provider's signal fired, its capacity free again", async () => {
    const answer = await natsRequest(nc, "mig.v0_1.acme.invoke.test.deadline.waits", {
      header: { tenant_id: "acme", deadline_ms: 300 },
      payload: {},
    });
    expectEnvelope("ErrorEnvelope", answer.body);
    expect(answer.body.error.code).toBe("MIG_TIMEOUT");
    expect(answer.body.error.details).toEqual({ deadline_ms: 300 });
    expect(answer.headers.mig_error_code).toBe("MIG_TIMEOUT");

    await waitFor("the provider's signal", () => aborted.length === 1);
    expect((aborted[0] as { code?: string }).code).toBe("MIG_TIMEOUT");
    expect(t.runtime.work.invocations.size).toBe(0);
    const next = await natsRequest(nc, "mig.v0_1.acme.invoke.test.deadline.quick", {
      header: { tenant_id: "acme" },
      payload: {},
    });
    expect(next.body.payload).toEqual({ ok: true });
  });
});
