// GET /healthz (the process answers) and GET /readyz (the bus and JetStream answer), with a real nats-server that
// is stopped (SIGSTOP) and resumed under the runtime.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
let stoppedPid: number | undefined;
beforeAll(async () => {
  t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: "readiness-test-secret-of-32-bytes!!" } });
});
afterAll(async () => {
  if (stoppedPid !== undefined) process.kill(stoppedPid, "SIGCONT");
  await t?.stop();
});

const readyz = async () => {
  const answer = await t.get("/readyz");
  return { status: answer.status, body: JSON.parse(answer.text) };
};

describe("liveness and readiness", () => {
  it("both answer 200 without a token, even in jwt mode (probes carry none)", async () => {
    expect(await t.get("/healthz")).toEqual({ status: 200, text: '{"status":"live"}' });
    expect(await readyz()).toEqual({ status: 200, body: { ready: true, bus: "connected", jetstream: "ok" } });
  });

  it("/readyz answers 503 naming the bus while nats-server does not answer, /healthz stays 200, and both recover", async () => {
    stoppedPid = t.runtime.launcher!.pid!;
    process.kill(stoppedPid, "SIGSTOP");
    const down = await readyz();
    expect(down).toEqual({ status: 503, body: { ready: false, bus: "unreachable", jetstream: "unknown" } });
    expect((await t.get("/healthz")).status).toBe(200);
    process.kill(stoppedPid, "SIGCONT");
    stoppedPid = undefined;
    await waitFor("ready again", async () => (await readyz()).status === 200);
    expect((await readyz()).body).toEqual({ ready: true, bus: "connected", jetstream: "ok" });
  });
});
