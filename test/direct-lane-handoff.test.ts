// The direct lane's switches with requests in flight: a NATS caller keeps invoking a capability while a `mig worker`
// starts serving it (the gateways hand its invokes to the worker's lane at the registration's instant) and while the
// worker stops (they take them back). Every request is answered, and answered once.
import { createInbox, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsClient } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

let gateway: MigProcess;
let busUrl: string;
let nc: NatsConnection;

beforeAll(async () => {
  ({ gateway, busUrl } = await startGateway());
  nc = await natsClient(busUrl);
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await gateway?.stop("SIGKILL");
});

describe("the direct lane's switches", () => {
  it("answer every request once while a worker's lane opens and while the worker stops", async () => {
    const inbox = createInbox();
    const replies = new Map<number, string[]>();
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (_err, msg) => {
        const i = Number(msg.subject.slice(inbox.length + 1));
        const body = msg.json<{ payload?: { served_by?: string }; error?: { code: string } }>();
        replies.set(i, [...(replies.get(i) ?? []), body.payload?.served_by ?? body.error?.code ?? "?"]);
      },
    });
    let sent = 0;
    const body = JSON.stringify({ header: { tenant_id: "acme" }, payload: { n: 1 } });
    const firing = setInterval(() => {
      for (let k = 0; k < 2; k++) nc.publish("mig.v0_1.acme.invoke.fleet.echo", body, { reply: `${inbox}.${sent++}` });
    }, 1);

    const worker = startMig(["worker", "test/fixtures/fleet-provider.ts"], {
      MIG_NATS_URL: busUrl,
      WORKER_NAME: "w",
      MIG_PROVIDER_HEARTBEAT_MS: "500",
    });
    try {
      await worker.waitForLog("direct lane answering NATS invokes", 30_000);
      await waitFor("the lane to answer some", () => [...replies.values()].some((r) => r[0] === "w"));
      await worker.stop("SIGTERM");
      const stoppedAt = sent;
      await waitFor("answers after the worker left", () =>
        [...replies.entries()].some(([i, r]) => i > stoppedAt && r[0] === "MIG_UNSUPPORTED_CAPABILITY"),
      );
    } finally {
      clearInterval(firing);
      await worker.stop("SIGKILL");
    }
    await waitFor(`answers to all ${sent} requests`, () => replies.size === sent, 20_000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500)); // room for a second answer, if anything sent one
    sub.unsubscribe();
    const unanswered = Array.from({ length: sent }, (_, i) => i).filter((i) => !replies.has(i));
    const twice = [...replies.entries()].filter(([, r]) => r.length > 1);
    expect({ unanswered, twice }).toEqual({ unanswered: [], twice: [] });
    // Both sides of each switch were crossed: the gateway answered before and after, the worker in between.
    const firsts = [...replies.values()].map((r) => r[0]);
    expect(firsts).toContain("w");
    expect(firsts).toContain("MIG_UNSUPPORTED_CAPABILITY");
  }, 90_000);
});
