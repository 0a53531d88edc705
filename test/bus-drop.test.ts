// When the bus connection drops, what waits on it fails at once with MIG_UNAVAILABLE (retryable), not at its deadline:
// a PUBLISH waiting for JetStream's ack and a remote INVOKE waiting for a worker's answer.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { topicRef } from "../runtime/store/events.ts";
import { WorkerHost } from "../worker/host.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

/** Far beyond this test's own time limit (30 s): an answer that comes at all did not wait for the deadline. */
const DEADLINE_MS = 60_000;

let started = 0;
const slow = defineCapability(
  anyDescriptor("test.bus.slow", ["unary"]),
  (_payload, { signal }) => {
    started++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ done: true }), DEADLINE_MS * 2);
      signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    });
  },
  anySchemas,
);

let gateway: TestRuntime;
let workerRuntime: MigRuntime;
let host: WorkerHost;

beforeAll(async () => {
  gateway = await startTestRuntime();
  const config = loadConfig({ natsUrl: gateway.runtime.natsUrl, dataDir: gateway.dataDir, logLevel: "silent" }, {});
  workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
  host = await WorkerHost.start(workerRuntime, [slow], { heartbeatMs: 500, direct: false });
  await waitFor("the gateway to see the worker's capability", () => gateway.runtime.capabilities.get("test.bus.slow"));
});
afterAll(async () => {
  await host?.stop();
  await workerRuntime?.stop();
  await gateway?.stop();
});

describe("the embedded nats-server dies under in-flight work", () => {
  it("a remote INVOKE awaiting its worker gets MIG_UNAVAILABLE with retry_after_ms; a PUBLISH awaiting its ack is stored once the bus is back, never twice; the runtime serves again after the restart", async () => {
    // The topic's stream exists before the bus stops, so the PUBLISH below waits only for its ack.
    expect(
      (await gateway.post("/mig/v0.1/publish/bus.drop", { header: { tenant_id: "acme" }, payload: { n: 0 } })).status,
    ).toBe(200);

    const invoking = gateway.post("/mig/v0.1/invoke/test.bus.slow", {
      header: { tenant_id: "acme", deadline_ms: DEADLINE_MS },
      payload: {},
    });
    await waitFor("the worker to run the capability", () => started === 1);

    // A stopped server takes the stored event into its socket buffer and never acks it.
    const launcher = gateway.runtime.launcher!;
    const serverPid = launcher.pid!;
    process.kill(serverPid, "SIGSTOP");
    const sent = gateway.runtime.bus.events.stats().outMsgs;
    const publishing = gateway.post("/mig/v0.1/publish/bus.drop", {
      header: { tenant_id: "acme", deadline_ms: DEADLINE_MS, idempotency_key: "drop-1" },
      payload: { n: 1 },
    });
    await waitFor("the stored event to leave the runtime", () => gateway.runtime.bus.events.stats().outMsgs > sent);
    process.kill(serverPid, "SIGKILL");

    // Both answer within this test's 30 s, though their deadlines are 60 s and the store's own ack timeout 10 s:
    // the drop itself failed them.
    const [invoked, published] = await Promise.all([invoking, publishing]);
    expectError(invoked, 503, "MIG_UNAVAILABLE");
    expect(invoked.body.error.retryable).toBe(true);
    expect(invoked.body.error.message).toMatch(/NATS connection dropped while waiting for the worker's answer/);
    expect(invoked.body.error.details).toEqual({ cause: invoked.body.error.message, retry_after_ms: 1000 });

    // The runtime sends the event again (same Nats-Msg-Id) if its connection is back within 2 s: the launcher's
    // restart of a lone server usually is, and the PUBLISH is stored. If it is not, the caller hears so at once.
    if (published.status !== 200) {
      expectError(published, 503, "MIG_UNAVAILABLE");
      expect(published.body.error.retryable).toBe(true);
      expect(published.body.error.details).toEqual({
        cause: "the NATS connection dropped while the message waited for JetStream's ack; retry",
        retry_after_ms: 1000,
      });
    }

    // The launcher brings the server back on the same port; the caller's retry (same key) is stored once.
    await waitFor("nats-server to come back", () => launcher.pid !== undefined && launcher.pid !== serverPid, 15_000);
    const retried = await waitFor(
      "a retried PUBLISH to be stored",
      async () => {
        const res = await gateway.post("/mig/v0.1/publish/bus.drop", {
          header: { tenant_id: "acme", idempotency_key: "drop-1" },
          payload: { n: 1 },
        });
        return res.status === 200 ? res : undefined;
      },
      15_000,
    );
    if (published.status === 200) expect(retried.body.sequence).toBe(published.body.sequence);
    const info = await gateway.runtime.bus.jsm.streams.info(topicRef("acme", "bus.drop").stream);
    expect(info.state.messages).toBe(2);
    expect(retried.body.accepted).toBe(true);
  });
});
