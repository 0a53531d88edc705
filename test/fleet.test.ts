// The worker fleet with real processes: `mig start` as gateway, `mig worker` processes behind it on its bus.
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createInbox, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decode, encode, jsWorkSubject, REGISTRY_BUCKET, workSubject } from "../runtime/protocol/provider-protocol.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const FIXTURE = "test/fixtures/fleet-provider.ts";
const LONELY = "test/fixtures/lonely-provider.ts";
const log = join(mkdtempSync(join(tmpdir(), "mig-fleet-")), "fleet.log");
const processes: MigProcess[] = [];
const named = new Map<string, MigProcess>();

let gateway: MigProcess;
let busUrl: string;
let httpUrl: string;
let nc: NatsConnection;

function worker(module: string, name: string): MigProcess {
  const child = startMig(["worker", module], {
    MIG_NATS_URL: busUrl,
    WORKER_NAME: name,
    FLEET_LOG: log,
    MIG_PROVIDER_HEARTBEAT_MS: "500",
  });
  processes.push(child);
  named.set(name, child);
  return child;
}

function logLines(): string[] {
  return existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
}

async function discoverIds(): Promise<string[]> {
  const answer = await natsRequest(nc, "mig.v0_1.acme.discover", {});
  return answer.body.capabilities.map((c: { id: string }) => c.id);
}

function invoke(capability: string, payload: unknown, header: Record<string, unknown> = {}, timeoutMs = 40_000) {
  return natsRequest(nc, `mig.v0_1.acme.invoke.${capability}`, { header, payload }, {}, timeoutMs).then((a) => a.body);
}

/** Runs `count` calls with at most `width` in flight, keeping each answer in order. */
async function pooled<T>(count: number, width: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const answers: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) {
        const i = next++;
        answers[i] = await call(i);
      }
    }),
  );
  return answers;
}

beforeAll(async () => {
  ({ gateway, busUrl, httpUrl } = await startGateway());
  processes.push(gateway);
  nc = await natsClient(busUrl);
  const workers = ["w1", "w2", "w3"].map((name) => worker(FIXTURE, name));
  await Promise.all(workers.map((w) => w.waitForLog("worker serving")));
  await waitFor("the workers' capabilities in DISCOVER", async () =>
    (await discoverIds()).includes("fleet.record.once"),
  );
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
});

describe("a fleet of workers behind `mig start`", () => {
  it("shares 300 invocations among 3 workers, each serving some", async () => {
    // A request left unanswered fails with its own number, within the test's time.
    const answers = await pooled(300, 30, (i) =>
      invoke("fleet.echo", { i }, {}, 20_000).catch((err: Error) => {
        throw new Error(`invocation ${i} of fleet.echo: ${err.message}`);
      }),
    );
    const servedBy = new Map<string, number>();
    answers.forEach((answer, i) => {
      expect(answer.error, JSON.stringify(answer)).toBeUndefined();
      expect(answer.payload.echo.i).toBe(i);
      servedBy.set(answer.payload.served_by, (servedBy.get(answer.payload.served_by) ?? 0) + 1);
    });
    expect([...servedBy.keys()].sort()).toEqual(["w1", "w2", "w3"]);
    expect([...servedBy.values()].reduce((a, b) => a + b, 0)).toBe(300);
  }, 60_000);

  it("loses none of 200 at_least_once invocations when a worker is SIGKILLed mid-run; with idempotency keys callers see no duplicates", async () => {
    const batch = randomUUID().slice(0, 8);
    const keys = Array.from({ length: 200 }, (_, i) => `${batch}-${i}`);
    const running = pooled(200, 60, (i) =>
      invoke("fleet.record", { n: i, sleep_ms: 100 }, { idempotency_key: keys[i] }),
    );
    await waitFor("some of the batch to run", () => logLines().filter((l) => l.includes(batch)).length >= 40);
    await named.get("w1")!.stop("SIGKILL");
    const answers = await running;
    answers.forEach((answer, i) => {
      expect(answer.error, JSON.stringify(answer)).toBeUndefined();
      expect(answer.payload.n).toBe(i);
    });
    const runs = logLines()
      .filter((l) => l.startsWith(`ran ${batch}-`))
      .map((l) => l.split(" ") as [string, string, string]);
    // None lost: every key ran.
    expect(new Set(runs.map(([, key]) => key)).size).toBe(200);
    // Only work the dead worker had taken and not yet acked runs again, once, elsewhere.
    const byKey = new Map<string, string[]>();
    for (const [, key, by] of runs) byKey.set(key, [...(byKey.get(key) ?? []), by]);
    for (const [key, by] of byKey) {
      if (by.length > 1) expect({ key, by }).toEqual({ key, by: ["w1", by[1]] });
    }

    // The same keys again: every caller gets the first result, and nothing runs again.
    const before = logLines().length;
    const again = await pooled(200, 60, (i) =>
      invoke("fleet.record", { n: i, sleep_ms: 100 }, { idempotency_key: keys[i] }),
    );
    again.forEach((answer, i) => {
      expect(answer.payload).toEqual(answers[i].payload);
    });
    expect(logLines().length).toBe(before);
  }, 60_000);

  it("keeps exactly_once per idempotency key, and refuses an exactly_once call without one", async () => {
    const refused = await invoke("fleet.record.once", { n: 1 });
    expect(refused.error.code).toBe("MIG_INVALID_REQUEST");
    const key = `once-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => invoke("fleet.record.once", { n: 7, sleep_ms: 50 }, { idempotency_key: key })),
    );
    for (const answer of answers) expect(answer.payload).toEqual(answers[0].payload);
    expect(logLines().filter((l) => l.startsWith(`ran ${key} `))).toHaveLength(1);
  });

  it("drops a SIGKILLed worker from DISCOVER within 10 s, and lists it again when it comes back", async () => {
    const first = worker(LONELY, "lonely-1");
    await first.waitForLog("worker serving");
    await waitFor("fleet.lonely in DISCOVER", async () => (await discoverIds()).includes("fleet.lonely"));
    await first.stop("SIGKILL");
    await waitFor(
      "fleet.lonely to leave DISCOVER",
      async () => !(await discoverIds()).includes("fleet.lonely"),
      10_000,
    );
    const answer = await invoke("fleet.lonely", {});
    expect(answer.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");

    const second = worker(LONELY, "lonely-2");
    await second.waitForLog("worker serving");
    await waitFor("fleet.lonely back in DISCOVER", async () => (await discoverIds()).includes("fleet.lonely"));
    expect((await invoke("fleet.lonely", {})).payload.lonely).toBe(true);
  }, 30_000);

  it("keeps its live workers through a stall of its own longer than their heartbeat window", async () => {
    const gone = () => gateway.logs.filter((l) => l.msg === "provider gone").length;
    const before = gone();
    // Stopped for longer than 3 missed heartbeats (3 × 500 ms): the workers beat on, the gateway cannot read them.
    process.kill(gateway.child.pid!, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 2_500));
    process.kill(gateway.child.pid!, "SIGCONT");
    // Answering proves it read its socket again; a second later it has swept twice more.
    await discoverIds();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(gone()).toBe(before);
    expect((await discoverIds()).filter((id) => id.startsWith("fleet.record"))).not.toHaveLength(0);
  }, 20_000);

  it("answers MIG_UNAVAILABLE (retryable) when the worker running a best_effort call dies, before the deadline", async () => {
    const holder = processes.filter((p) => p.child.spawnargs.includes(LONELY) && p.child.exitCode === null).at(-1)!;
    const id = randomUUID();
    const pending = invoke("fleet.lonely", { sleep_ms: 60_000 }, { message_id: id, deadline_ms: 25_000 });
    await waitFor("the worker to hold the call", () => logLines().includes(`holding ${id}`));
    await holder.stop("SIGKILL");
    const answer = await pending;
    expect(answer.error.code).toBe("MIG_UNAVAILABLE");
    expect(answer.error.retryable).toBe(true);
  }, 30_000);

  it("carries a CANCEL from one gateway to an invocation running through another, and aborts the worker's handler", async () => {
    const other = startMig(["start"], { MIG_NATS_URL: busUrl });
    processes.push(other);
    const otherHttp = String((await other.waitForLog("HTTP binding listening")).url);
    const id = randomUUID();
    const post = (base: string, path: string, body: unknown) =>
      fetch(base + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then((r) => r.json() as Promise<any>);
    const pending = post(otherHttp, "/mig/v0.1/invoke/fleet.echo", {
      header: { tenant_id: "acme", message_id: id },
      payload: { sleep_ms: 20_000 },
    });
    await waitFor("the worker to start the call", () => logLines().some((l) => l.startsWith(`started ${id}`)));
    // Another tenant asking through the fleet hears what it would hear of an id nobody holds.
    const probe = await post(httpUrl, `/mig/v0.1/cancel/${id}`, { header: { tenant_id: "globex" }, reason: "probe" });
    expect(probe).toMatchObject({ target_message_id: id, accepted: false, status: "not_found" });
    const ack = await post(httpUrl, `/mig/v0.1/cancel/${id}`, { header: { tenant_id: "acme" }, reason: "user left" });
    expect(ack).toMatchObject({ target_message_id: id, accepted: true, status: "cancelled" });
    const answer = await pending;
    expect(answer.error.code).toBe("MIG_TIMEOUT");
    expect(answer.error.details.cancelled).toBe(true);
    await waitFor("the handler's signal to fire", () => logLines().some((l) => l.startsWith(`aborted ${id}`)));
    const foreign = await post(httpUrl, `/mig/v0.1/cancel/${randomUUID()}`, { header: { tenant_id: "acme" } });
    expect(foreign.status).toBe("not_found");
    expect(await other.stop("SIGTERM")).toBe(0);
  }, 30_000);

  it("carries the caller's deadline to the worker: the handler's signal fires when it passes", async () => {
    const id = randomUUID();
    const answer = await invoke("fleet.echo", { sleep_ms: 20_000 }, { message_id: id, deadline_ms: 500 });
    expect(answer.error.code).toBe("MIG_TIMEOUT");
    await waitFor("the worker's handler to be aborted", () => logLines().some((l) => l.startsWith(`aborted ${id}`)));
  });

  it("refuses to start a worker without a bus or with a module that exports no capability", async () => {
    const noBus = startMig(["worker", FIXTURE]);
    expect(await noBus.exited).toBe(1);
    expect(noBus.stderr()).toContain("set MIG_NATS_URL");
    const empty = startMig(["worker", "runtime/protocol/names.ts"], { MIG_NATS_URL: busUrl });
    expect(await empty.exited).toBe(1);
    expect(empty.stderr()).toContain("exports no capability");
  });

  it("runs the demo provider as `mig worker runtime/provider/demo-provider.ts`, taking queued work from the bus", async () => {
    const demo = worker("runtime/provider/demo-provider.ts", "demo");
    const line = await demo.waitForLog("worker serving");
    expect(line.capabilities).toEqual(["observatory.models.infer"]);
    const kv = await new Kvm(nc).open(REGISTRY_BUCKET);
    // The registration is relayed into KV by a runtime, so it may land just after the worker's log line.
    const entry = await waitFor("the worker's registry entry", async () =>
      (await kv.get(String(line.provider_id)))?.json<{ capabilities: unknown[] }>(),
    );
    expect(entry.capabilities).toHaveLength(1);
    // Speak the provider protocol directly: a queued work request, answered on its reply_to subject.
    const inbox = createInbox();
    const sub = nc.subscribe(inbox, { max: 1 });
    const header = {
      mig_version: "0.1",
      message_id: randomUUID(),
      timestamp: new Date().toISOString(),
      tenant_id: "acme",
      deadline_ms: 10_000,
    };
    await jetstream(nc).publish(
      jsWorkSubject("observatory.models.infer"),
      encode({
        v: 1,
        capability: "observatory.models.infer",
        header,
        payload: { input: "hi" },
        principal: { subject: "t", scopes: [], authenticated: false },
        deadline_at: Date.now() + 10_000,
        reply_to: inbox,
      }),
    );
    for await (const msg of sub) {
      const reply = decode(msg.data) as { ok: boolean; payload: { result: string; echo: unknown } };
      expect(reply).toMatchObject({ ok: true, payload: { result: "ok", echo: { input: "hi" } } });
    }
  });
});

describe("providers that misbehave", () => {
  it("counts a provider that answers garbage or answers twice, and answers the caller with one envelope", async () => {
    // A provider written from the protocol document alone: raw NATS and msgpack, registered through the registrar.
    const descriptor = {
      id: "fleet.rogue",
      version: "1.0.0",
      modes: ["unary"],
      input_schema_uri: "schema://t/x",
      output_schema_uri: "schema://t/x",
      auth_scopes: [],
    };
    const record = {
      v: 1,
      provider_id: "rogue-1",
      heartbeat_ms: 60_000,
      started_at: new Date().toISOString(),
      capabilities: [{ descriptor }],
    };
    nc.publish("_MIG.provider.register.rogue-2", JSON.stringify(record)); // names another id than its subject: refused
    nc.publish("_MIG.provider.register.rogue-1", JSON.stringify(record));
    const rogue = nc.subscribe(workSubject("fleet.rogue"), {
      queue: "mig-workers",
      callback: (_err, msg) => {
        const request = decode(msg.data) as { payload: { mode: string } };
        if (request.payload.mode === "garbage") msg.respond(new Uint8Array([0xc1, 0x00, 0xff]));
        else {
          msg.respond(encode({ ok: true, payload: { first: true } }));
          msg.respond(encode({ ok: true, payload: { first: false } }));
        }
      },
    });
    await waitFor("fleet.rogue in DISCOVER", async () => (await discoverIds()).includes("fleet.rogue"));
    const garbage = await invoke("fleet.rogue", { mode: "garbage" });
    expect(garbage.error.code).toBe("MIG_INTERNAL");
    const twice = await invoke("fleet.rogue", { mode: "twice" });
    expect(twice.payload).toEqual({ first: true });
    const metrics = await waitFor("the rejected replies to be counted", async () => {
      const text = await (await fetch(`${httpUrl}/metrics`)).text();
      return /mig_provider_replies_rejected_total\{reason="late_or_duplicate"\} [1-9]/.test(text) &&
        /reason="garbage"\} [1-9]/.test(text)
        ? text
        : "";
    });
    expect(metrics).toContain("mig_provider_replies_rejected_total");
    const kv = await new Kvm(nc).open(REGISTRY_BUCKET);
    expect(await kv.get("rogue-2")).toBeNull();
    rogue.unsubscribe();
    nc.publish("_MIG.provider.leave.rogue-1");
    await waitFor("fleet.rogue to leave DISCOVER", async () => !(await discoverIds()).includes("fleet.rogue"));
  });
});
