// Versions side by side in a fleet of real processes: `mig start` as gateway and `mig worker` processes serving
// different versions of one capability. Pinned callers reach their version's workers, on the unary and streaming
// paths; a worker whose version breaks its line is refused at registration, says so, and serves nothing of it.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CapabilityDescriptor } from "../schemas/types.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const FIXTURE = "test/fixtures/versioned-provider.ts";
const PIN = "mig.capability_version";
const processes: MigProcess[] = [];
let busUrl: string;
let httpUrl: string;
let nc: NatsConnection;

function worker(version: string, input: "open" | "strict"): MigProcess {
  const child = startMig(["worker", FIXTURE], {
    MIG_NATS_URL: busUrl,
    CONTRACT_VERSION: version,
    CONTRACT_INPUT: input,
    MIG_PROVIDER_HEARTBEAT_MS: "500",
  });
  processes.push(child);
  return child;
}

async function versionsListed(): Promise<string[]> {
  const answer = await natsRequest(nc, "mig.v0_1.acme.discover", { query: "contracts.greet" });
  return answer.body.capabilities.map((d: CapabilityDescriptor) => d.version);
}

const meta = (pin?: string) => (pin === undefined ? {} : { meta: { [PIN]: pin } });

async function httpInvoke(pin: string | undefined, payload: object) {
  const res = await fetch(`${httpUrl}/mig/v0.1/invoke/contracts.greet`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme", ...meta(pin) }, payload }),
  });
  return (await res.json()) as any;
}

function natsInvoke(pin: string | undefined, payload: object) {
  return natsRequest(nc, "mig.v0_1.acme.invoke.contracts.greet", {
    header: { tenant_id: "acme", ...meta(pin) },
    payload,
  }).then((a) => a.body);
}

beforeAll(async () => {
  const started = await startGateway();
  processes.push(started.gateway);
  ({ busUrl, httpUrl } = started);
  nc = await natsClient(busUrl);
  const workers = [worker("1.0.0", "open"), worker("2.0.0", "strict")];
  await Promise.all(workers.map((w) => w.waitForLog("worker serving")));
  await waitFor("both versions in DISCOVER", async () => (await versionsListed()).join(" ") === "2.0.0 1.0.0", 20_000);
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
});

describe("two versions of one capability served by two workers", () => {
  it("each pinned caller gets its own version's worker, over HTTP and NATS; an unpinned one the highest", async () => {
    for (let i = 0; i < 10; i++) {
      expect((await httpInvoke("1.0.0", { name: "ada" })).payload).toEqual({
        greeting: "hello ada",
        served_version: "1.0.0",
      });
      expect((await httpInvoke("^2", { name: "bo", lang: "en" })).payload.served_version).toBe("2.0.0");
      expect((await natsInvoke("~1.0", { name: "cy" })).payload.served_version).toBe("1.0.0");
      expect((await natsInvoke(undefined, { lang: "fr" })).payload.served_version).toBe("2.0.0");
    }
    // Each version's input contract is its own: 2.0.0 needs `lang`, 1.0.0 does not.
    expect((await httpInvoke("2.0.0", { name: "dee" })).error.code).toBe("MIG_INVALID_REQUEST");
    const pinned = await httpInvoke("1.0.0", { name: "eve" });
    expect(pinned.header.meta[PIN]).toBe("1.0.0");
  });

  it("a pin no worker serves is MIG_UNSUPPORTED_CAPABILITY with the versions that exist", async () => {
    const answer = await natsInvoke("^3", {});
    expect(answer.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    expect(answer.error.details.available_versions).toEqual(["2.0.0", "1.0.0"]);
  });

  it("streams go to the pinned version's worker too (SSE relay and the NATS hand-off)", async () => {
    const res = await fetch(`${httpUrl}/mig/v0.1/invoke/contracts.greet`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        header: { tenant_id: "acme", ...meta("1.0.0") },
        payload: { name: "fay" },
        stream_preference: "server_stream",
      }),
    });
    const frames = (await res.text())
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .map((line) => JSON.parse(line.slice(6)));
    expect(frames.map((f) => f.payload.served_version)).toEqual(["1.0.0", "1.0.0"]);

    const streamId = `n-${randomUUID()}`;
    const subject = `mig.v0_1.acme.stream.${streamId}`;
    const received: any[] = [];
    let ended!: () => void;
    const done = new Promise<void>((resolve) => (ended = resolve));
    const sub = nc.subscribe(subject, {
      callback: (_err, msg) => {
        const frame = msg.json<any>();
        received.push(frame);
        if (frame.end_stream) ended();
      },
    });
    await nc.flush();
    const start = await natsRequest(nc, "mig.v0_1.acme.control.stream", {
      header: { tenant_id: "acme", message_id: randomUUID(), ...meta("2") },
      capability: "contracts.greet",
      payload: { lang: "de" },
      stream_id: streamId,
      stream_preference: "server_stream",
    });
    expect(start.body.error).toBeUndefined();
    nc.publish(
      `${subject}.in`,
      JSON.stringify({ kind: "control", stream_id: streamId, payload: { action: "credit", credit: 8 } }),
    );
    await done;
    sub.unsubscribe();
    expect(received.map((f) => f.payload.served_version)).toEqual(["2.0.0", "2.0.0"]);
  });

  it("refuses a worker's incompatible 1.1.0 at registration, naming the breaking change; the fleet keeps serving 1.0.0 and 2.0.0", async () => {
    const incompatible = worker("1.1.0", "strict");
    const refused = await incompatible.waitForLog("this worker does not serve contracts.greet 1.1.0");
    expect(refused.capability).toBe("contracts.greet");
    expect(refused.version).toBe("1.1.0");
    expect(String(refused.msg)).toMatch(
      /^registration refused: capability contracts.greet 1.1.0 breaks callers of 1.0.0/,
    );
    expect((refused.details as { breaking: unknown[] }).breaking).toContainEqual(
      expect.objectContaining({ direction: "input", path: "/properties/lang", rule: "required-added" }),
    );
    // It stops offering the capability and registers again without it.
    await incompatible.waitForLog("worker capabilities changed");
    expect(await versionsListed()).toEqual(["2.0.0", "1.0.0"]);
    for (let i = 0; i < 10; i++) {
      expect((await natsInvoke("^1", { name: "gil" })).payload.served_version).toBe("1.0.0");
    }
    expect((await natsInvoke("1.1.0", {})).error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
  }, 30_000);
});
