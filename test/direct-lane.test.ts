// The direct lane with real processes: a `mig worker` answers NATS invokes of its best_effort capabilities
// itself, each request is answered once, and what the gateway still does (unknown capabilities, HTTP,
// CANCEL, callers of a worker that dies) keeps working.
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInbox, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { echo } from "./fixtures/fleet-provider.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const FIXTURE = "test/fixtures/fleet-provider.ts";
const log = join(mkdtempSync(join(tmpdir(), "mig-direct-")), "fleet.log");
const processes: MigProcess[] = [];

let gateway: MigProcess;
let busUrl: string;
let httpUrl: string;
let nc: NatsConnection;

function worker(name: string, env: Record<string, string> = {}): MigProcess {
  // Heartbeats at the default 2 s: a gateway paused for a moment by a test must not take a worker for dead.
  const child = startMig(["worker", FIXTURE], { MIG_NATS_URL: busUrl, WORKER_NAME: name, FLEET_LOG: log, ...env });
  processes.push(child);
  return child;
}

const logLines = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);

function invoke(capability: string, payload: unknown, header: Record<string, unknown> = {}, timeout = 20_000) {
  return natsRequest(
    nc,
    `mig.v0_1.acme.invoke.${capability}`,
    { header: { tenant_id: "acme", ...header }, payload },
    {},
    timeout,
  ).then((a) => a.body);
}

/** Pauses the gateway process (not its nats-server, which runs in its own process group) while `body` runs. */
async function withGatewayPaused<T>(body: () => Promise<T>): Promise<T> {
  process.kill(gateway.child.pid!, "SIGSTOP");
  try {
    return await body();
  } finally {
    process.kill(gateway.child.pid!, "SIGCONT");
  }
}

beforeAll(async () => {
  ({ gateway, busUrl, httpUrl } = await startGateway());
  processes.push(gateway);
  nc = await natsClient(busUrl);
  const first = worker("d1");
  await first.waitForLog("direct lane answering NATS invokes");
  // Every gateway has the switch instant before it comes (it is in the registration): wait until this one lists it.
  await waitFor("fleet.echo in DISCOVER", async () =>
    (await natsRequest(nc, "mig.v0_1.acme.discover", {})).body.capabilities.some(
      (c: { id: string }) => c.id === "fleet.echo",
    ),
  );
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
});

describe("the direct lane of `mig worker`", () => {
  it("answers NATS invokes while the gateway is paused: the request never passes through it", async () => {
    const answers = await withGatewayPaused(() =>
      Promise.all(Array.from({ length: 50 }, (_, i) => invoke("fleet.echo", { i }, {}, 5_000))),
    );
    answers.forEach((answer, i) => {
      expect(answer.error, JSON.stringify(answer)).toBeUndefined();
      expect(answer.payload).toEqual({ served_by: "d1", echo: { i } });
    });
  });

  it("answers every request exactly once, direct or not", async () => {
    const inbox = createInbox();
    const replies = new Map<string, number>();
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (_e, msg) => void replies.set(msg.subject, (replies.get(msg.subject) ?? 0) + 1),
    });
    const subjects = ["fleet.echo", "fleet.echo", "fleet.record", "no.such.capability", "observatory.models.infer"];
    for (let i = 0; i < 100; i++) {
      const capability = subjects[i % subjects.length]!;
      const payload = capability === "observatory.models.infer" ? { input: "x" } : { n: i };
      nc.publish(`mig.v0_1.acme.invoke.${capability}`, JSON.stringify({ header: { tenant_id: "acme" }, payload }), {
        reply: `${inbox}.${i}`,
      });
    }
    await waitFor("100 answers", () => replies.size === 100);
    await new Promise((r) => setTimeout(r, 500)); // room for a second answer, if anything sent one
    sub.unsubscribe();
    expect(replies.size).toBe(100);
    expect([...replies.values()].every((n) => n === 1)).toBe(true);
  });

  it("leaves the gateway to answer what no worker serves, and keeps HTTP invokes on the gateway's path", async () => {
    const unknown = await invoke("no.such.capability", {});
    expect(unknown.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    const res = await fetch(`${httpUrl}/mig/v0.1/invoke/fleet.echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { via: "http" } }),
    });
    expect(((await res.json()) as any).payload).toEqual({ served_by: "d1", echo: { via: "http" } });
  });

  it("refuses bad input on the direct lane with the same MIG errors as the gateway", async () => {
    const notJson = await natsRequest(nc, "mig.v0_1.acme.invoke.fleet.echo", "{not json", {}, 5_000);
    expect(notJson.body.error.code).toBe("MIG_INVALID_REQUEST");
    expect(notJson.headers.mig_error_code).toBe("MIG_INVALID_REQUEST");
    const wrongTenant = await natsRequest(
      nc,
      "mig.v0_1.acme.invoke.fleet.echo",
      { header: { tenant_id: "other" }, payload: {} },
      {},
      5_000,
    );
    expect(wrongTenant.body.error.code).toBe("MIG_FORBIDDEN");
    const wrongShape = await natsRequest(
      nc,
      "mig.v0_1.acme.invoke.fleet.echo",
      { header: { tenant_id: "acme" }, payload: "text" },
      {},
      5_000,
    );
    expect(wrongShape.body.error.code).toBe("MIG_INVALID_REQUEST");
    expect((await invoke("fleet.echo", { after: "bad input" })).payload.echo).toEqual({ after: "bad input" });
  });

  it("cancels a direct invocation by a CANCEL sent to the gateway, aborting the handler", async () => {
    const id = randomUUID();
    const pending = invoke("fleet.echo", { sleep_ms: 20_000 }, { message_id: id });
    await waitFor("the worker to start the call", () => logLines().some((l) => l.startsWith(`started ${id}`)));
    const ack = await natsRequest(nc, `mig.v0_1.acme.control.cancel.${id}`, {
      header: { tenant_id: "acme" },
      reason: "changed my mind",
    });
    expect(ack.body).toMatchObject({ target_message_id: id, accepted: true, status: "cancelled" });
    const answer = await pending;
    expect(answer.error.details.cancelled).toBe(true);
    await waitFor("the handler's signal to fire", () => logLines().some((l) => l.startsWith(`aborted ${id}`)));
  });

  it("has the gateway answer MIG_UNAVAILABLE for a slow call whose direct-lane worker dies", async () => {
    const doomed = worker("doomed");
    await doomed.waitForLog("direct lane answering NATS invokes");
    const held = processes.find((p) => p === processes[1])!; // d1
    await held.stop("SIGKILL");
    const id = randomUUID();
    const pending = invoke("fleet.echo", { sleep_ms: 60_000 }, { message_id: id, deadline_ms: 25_000 }, 30_000);
    await waitFor("the surviving worker to hold the call", () => logLines().includes(`started ${id} doomed`));
    await new Promise((r) => setTimeout(r, 300)); // past the held notice (100 ms, swept every 50 ms)
    await doomed.stop("SIGKILL");
    const answer = await pending;
    expect(answer.error.code).toBe("MIG_UNAVAILABLE");
    expect(answer.error.retryable).toBe(true);
    expect(typeof answer.error.details.provider_id).toBe("string");
    await gateway.waitForLog("answered the callers a gone direct-lane worker held");
  }, 40_000);

  it("with MIG_WORKER_DIRECT=false, a worker takes NATS invokes only through the gateway", async () => {
    const plain = worker("plain", { MIG_WORKER_DIRECT: "false" });
    await plain.waitForLog("worker serving");
    await waitFor("the dead workers to leave", async () => {
      const answer = await invoke("fleet.echo", {}, {}, 3_000).catch(() => undefined);
      return answer?.payload?.served_by === "plain";
    });
    const paused = await withGatewayPaused(() =>
      invoke("fleet.echo", {}, {}, 1_500).then(
        () => "answered",
        () => "no answer",
      ),
    );
    expect(paused).toBe("no answer");
    // The gateway answers the calls it took while paused; the next one is dispatched to the worker as before.
    await waitFor(
      "the gateway to dispatch to the worker again",
      async () => (await invoke("fleet.echo", { back: true })).payload?.served_by === "plain",
    );
  }, 40_000);

  it("a worker that starts while others serve its capability hosts it itself, not through them", async () => {
    const config = loadConfig(
      { natsUrl: busUrl, dataDir: mkdtempSync(join(tmpdir(), "mig-direct-late-")), logLevel: "silent" },
      {},
    );
    const runtime = await MigRuntime.start(config, { logger: createLogger("silent") });
    try {
      // Its fleet view lists the other worker's fleet.echo before the worker host adds its own.
      await waitFor(
        "the fleet view to list another worker's fleet.echo",
        () => runtime.capabilities.get("fleet.echo") !== undefined,
      );
      const host = await WorkerHost.start(runtime, [echo]);
      expect(runtime.capabilities.hasLocal("fleet.echo")).toBe(true);
      const answer = await runtime.invoke(
        { header: { tenant_id: "acme" }, payload: { late: true } },
        { principal: anonymousPrincipal(), binding: "http", tenant: "acme" },
        "fleet.echo",
      );
      expect(answer.payload).toEqual({ served_by: String(process.pid), echo: { late: true } });
      await host.stop();
    } finally {
      await runtime.stop();
    }
  });
});
