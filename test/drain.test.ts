// A gateway that stops (cli/shutdown.ts): it takes no new work, lets what is in flight finish, and past its drain
// bound answers what is left with a retryable MIG_UNAVAILABLE. Real HTTP and NATS bindings, a real nats-server.
import { afterEach, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { stopGateway } from "../cli/shutdown.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const started: { n: number; signal: AbortSignal; finish: () => void }[] = [];
const held = defineCapability(
  anyDescriptor("test.drain.held", ["unary"]),
  (payload, { signal }) =>
    new Promise((resolve) => started.push({ n: Number(payload.n), signal, finish: () => resolve({ n: payload.n }) })),
  anySchemas,
);

let t: TestRuntime | undefined;
let nats: NatsBinding | undefined;
afterEach(async () => {
  for (const s of started) s.finish();
  started.length = 0;
  // stopGateway stopped them; what a failed test left running is stopped here.
  await nats?.close().catch(() => undefined);
  await t?.http.close().catch(() => undefined);
  if (t && !t.runtime.bus.nc.isClosed()) await t.runtime.stop();
  t = undefined;
});

const invokeHttp = (n: number) =>
  t!.post("/mig/v0.1/invoke/test.drain.held", { header: { tenant_id: "acme", deadline_ms: 60_000 }, payload: { n } });

describe("a gateway that drains", () => {
  it("finishes the HTTP and NATS calls in flight, and takes no new ones while it waits for them", async () => {
    t = await startTestRuntime({ capabilities: [held] });
    nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
    const nc = await natsClient(t.runtime.natsUrl);
    try {
      const overHttp = invokeHttp(1);
      const overNats = natsRequest(nc, "mig.v0_1.acme.invoke.test.drain.held", { payload: { n: 2 } }, {}, 30_000);
      await waitFor("both calls to run", () => started.length === 2);

      const stopping = stopGateway(t.runtime, [nats, t.http], 30_000, createLogger("silent"));
      // New work is refused while the two run: the HTTP listener is closed, and nobody takes the NATS subject.
      await waitFor("the HTTP listener to close", async () => {
        try {
          await fetch(`${t!.http.url}/mig/v0.1/hello`, { method: "POST", body: "{}" });
          return false;
        } catch {
          return true;
        }
      });
      await waitFor("the NATS binding to leave its subjects", async () => {
        try {
          // A capability nobody serves: answered MIG_UNSUPPORTED_CAPABILITY while the binding still takes invokes.
          await natsRequest(nc, "mig.v0_1.acme.invoke.test.drain.nothing", { payload: {} }, {}, 300);
          return false;
        } catch {
          return true;
        }
      });
      await expect(
        natsRequest(nc, "mig.v0_1.acme.invoke.test.drain.held", { payload: { n: 3 } }, {}, 500),
      ).rejects.toThrow(); // unanswered: the gateways' copy of direct-lane invokes is only watched, never answered
      expect(started).toHaveLength(2);

      for (const s of started) s.finish();
      const [http, bus] = await Promise.all([overHttp, overNats]);
      expect(http).toMatchObject({ status: 200, body: { payload: { n: 1 } } });
      expect(bus.body).toMatchObject({ payload: { n: 2 } });
      await stopping;
      expect(t.runtime.bus.nc.isClosed()).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it("past the drain bound, a call still running is answered MIG_UNAVAILABLE (retryable), and its provider is told to stop", async () => {
    t = await startTestRuntime({ capabilities: [held] });
    const overHttp = invokeHttp(1);
    await waitFor("the call to run", () => started.length === 1);
    await stopGateway(t.runtime, [t.http], 200, createLogger("silent"));
    const answer = await overHttp;
    expect(answer.status).toBe(503);
    expect(answer.body.error).toMatchObject({
      code: "MIG_UNAVAILABLE",
      retryable: true,
      details: { cancelled: true, reason: "the runtime is shutting down" },
    });
    expect(started[0]!.signal.aborted).toBe(true);
  });
});
