// `mig dev cluster` as a user runs it: real nats-server nodes, `mig start` gateways and `mig worker` processes on
// the ports it is given; every gateway serves, and Ctrl-C (SIGINT) stops every process it started.
import { connect as tcpConnect } from "node:net";
import { describe, expect, it } from "vitest";
import { startMig } from "./helpers/process.ts";

/** A base port for the nodes (their routes are 2000 above), below the ephemeral range other tests' listeners use. */
const basePort = () => 20_000 + Math.floor(Math.random() * 5_000) * 2;

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });

describe("mig dev cluster", () => {
  it("starts 3 nodes, 2 gateways and a worker that all serve, and stops them all on SIGINT", async () => {
    const nats = basePort();
    const http = nats + 10;
    const grpc = nats + 20;
    const fleet = startMig([
      "dev",
      "cluster",
      "--nodes",
      "3",
      "--gateways",
      "2",
      "--workers",
      "1",
      "--base-port",
      String(nats),
      "--http-port",
      String(http),
      "--grpc-port",
      String(grpc),
    ]);
    try {
      const ready = await fleet.waitForLog("dev cluster ready", 90_000);
      expect(ready).toMatchObject({
        nats: `nats://127.0.0.1:${nats},nats://127.0.0.1:${nats + 1},nats://127.0.0.1:${nats + 2}`,
        http: [`http://127.0.0.1:${http}`, `http://127.0.0.1:${http + 1}`],
        js_replicas: 3,
      });
      for (const url of ready.http as string[]) {
        const res = await fetch(`${url}/mig/v0.1/invoke/observatory.models.infer`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "hello" } }),
        });
        expect(res.status).toBe(200);
        expect((await fetch(`${url}/readyz`)).status).toBe(200);
      }
      expect(await fleet.stop("SIGINT")).toBe(0);
      for (const port of [nats, nats + 1, nats + 2, http, http + 1, grpc, grpc + 1])
        expect(await refused(port)).toBe(true);
    } finally {
      await fleet.stop("SIGINT"); // stops what it started, if a check above failed first
    }
  }, 120_000);
});
