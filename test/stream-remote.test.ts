// Streams served by a worker over the bus: a gateway relays them to WebSocket callers with the same flow control and cancel.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { count, echo, forever } from "./fixtures/stream-provider.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { type Frame, StreamClient } from "./helpers/stream-client.ts";

const log = join(mkdtempSync(join(tmpdir(), "mig-stream-remote-")), "aborts.log");
process.env.STREAM_LOG = log;

let gateway: TestRuntime;
let workerRuntime: MigRuntime;
let host: WorkerHost;

beforeAll(async () => {
  gateway = await startTestRuntime({ config: { streamWindow: 16 } });
  const config = loadConfig(
    {
      natsUrl: gateway.runtime.natsUrl,
      dataDir: gateway.dataDir,
      logLevel: "silent",
      streamWindow: 16,
      streamStallMs: 60_000,
    },
    {},
  );
  workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
  host = await WorkerHost.start(workerRuntime, [count, forever, echo], { heartbeatMs: 500 });
  await waitFor("the gateway to see the worker's capabilities", () =>
    ["remote.stream.count", "remote.stream.forever", "remote.stream.echo"].every(
      (id) => gateway.runtime.capabilities.get(id)?.stream,
    ),
  );
});
afterAll(async () => {
  await host?.stop();
  await workerRuntime?.stop();
  await gateway?.stop();
});

const data = (frames: Frame[]) => frames.filter((f) => !f.end_stream);
const aborted = (messageId: string) =>
  (existsSync(log) ? readFileSync(log, "utf8") : "").split("\n").find((l) => l.startsWith(`aborted ${messageId}`));

describe("a worker's stream through a gateway", () => {
  it("100,000 frames to a consumer reading in bursts: in order, and neither process holds more than its window + 1", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const { streamId, messageId } = client.start("remote.stream.count", { count: 100_000 }, { deadlineMs: 120_000 });
    const atGateway = await waitFor(
      "the gateway's stream",
      () => gateway.runtime.work.streams.get(messageId) as StreamSession | undefined,
    );
    const atWorker = await waitFor(
      "the worker's stream",
      () => workerRuntime.work.streams.get(messageId) as StreamSession | undefined,
    );
    let pauses = 0;
    while (!client.done.has(streamId)) {
      const before = client.of(streamId).length;
      client.ws.pause();
      // The gateway pauses first, then the worker runs out of credit and pauses too.
      await waitFor("both sides to pause or the stream to end", async () => {
        if (atWorker.isOver) return true;
        const [g, w] = await Promise.all([
          gateway.runtime.metrics.streamsPaused.get(),
          workerRuntime.metrics.streamsPaused.get(),
        ]);
        return g.values[0]!.value === 1 && w.values[0]!.value === 1;
      });
      if (!atWorker.isOver) pauses++;
      client.ws.resume();
      await client.until(
        "more frames",
        () => client.done.has(streamId) || client.of(streamId).length > before + 10_000,
      );
    }
    const frames = await client.ended(streamId);
    expect(frames).toHaveLength(100_001);
    expect(data(frames).every((f, i) => f.payload.i === i && f.payload.pid === process.pid)).toBe(true);
    expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { frames: 100_000 } });
    expect(pauses).toBeGreaterThan(0);
    expect(atGateway.highWater).toBeLessThanOrEqual(17);
    expect(atWorker.highWater).toBeLessThanOrEqual(17);
    client.close();
  }, 60_000); // seconds on this machine; room for a slower one

  it("a control cancel at the gateway aborts the worker's provider; one control terminal frame", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const { streamId, messageId } = client.start("remote.stream.forever", {});
    await client.until("100 frames", () => client.of(streamId).length >= 100);
    client.send({ header: { tenant_id: "acme" }, stream_id: streamId, kind: "control", payload: { action: "cancel" } });
    const frames = await client.ended(streamId);
    expect(frames.at(-1)).toMatchObject({ kind: "control", end_stream: true, payload: { status: "cancelled" } });
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    await waitFor("the worker's provider to be aborted", () => aborted(messageId));
    expect(aborted(messageId)).toContain("MIG_TIMEOUT");
    await waitFor("the worker's stream to end", () => !workerRuntime.work.streams.has(messageId));
    client.close();
  });

  it("a CANCEL sent to another gateway of the fleet reaches the stream through the fan-out", async () => {
    const other = await startTestRuntime({ config: { natsUrl: gateway.runtime.natsUrl } });
    try {
      const client = await StreamClient.open(gateway.http.url);
      const { streamId, messageId } = client.start("remote.stream.forever", {});
      await client.until("10 frames", () => client.of(streamId).length >= 10);
      const ack = await other.post(`/mig/v0.1/cancel/${messageId}`, {
        header: { tenant_id: "acme" },
        reason: "from elsewhere",
      });
      expect(ack.body).toMatchObject({ target_message_id: messageId, accepted: true, status: "cancelled" });
      const frames = await client.ended(streamId);
      expect(frames.at(-1)).toMatchObject({ kind: "control", end_stream: true, payload: { status: "cancelled" } });
      await waitFor("the worker's provider to be aborted", () => aborted(messageId));
      client.close();
    } finally {
      await other.stop();
    }
  });

  it("a deadline ends the remote never-ending stream with MIG_TIMEOUT on both sides", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const { streamId, messageId } = client.start("remote.stream.forever", {}, { deadlineMs: 400 });
    const frames = await client.ended(streamId);
    expect(frames.at(-1)).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_TIMEOUT" } });
    await waitFor("the worker's provider to be aborted", () => aborted(messageId));
    client.close();
  });

  it("bidi: the caller's frames reach the worker's provider in order", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const { streamId } = client.start("remote.stream.echo", {});
    for (let i = 0; i < 200; i++)
      client.send({ header: { tenant_id: "acme" }, stream_id: streamId, kind: "request", payload: { i } });
    client.send({ header: { tenant_id: "acme" }, stream_id: streamId, kind: "request", end_stream: true });
    const frames = await client.ended(streamId);
    expect(data(frames).map((f) => f.payload.echo.i)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { received: 200 } });
    client.close();
  });

  it("200 concurrent remote streams on one WebSocket each complete with their own frames", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const ids = Array.from({ length: 200 }, () => client.start("remote.stream.count", { count: 25 }).streamId);
    await Promise.all(ids.map((id) => client.ended(id)));
    for (const id of ids) {
      const frames = client.of(id);
      expect(data(frames).map((f) => f.payload.i)).toEqual(Array.from({ length: 25 }, (_, i) => i));
      expect(frames.at(-1)!.kind).toBe("response");
    }
    client.close();
  });
});

describe("a `mig worker` process", () => {
  let worker: MigProcess;
  afterAll(() => worker?.stop());

  it("streams to a gateway over the bus; its pid is on every frame", async () => {
    await host.stop(); // only the process serves now
    await workerRuntime.stop();
    worker = startMig(["worker", "test/fixtures/stream-provider.ts"], {
      MIG_NATS_URL: gateway.runtime.natsUrl,
      MIG_PROVIDER_HEARTBEAT_MS: "500",
      STREAM_LOG: log,
    });
    await worker.waitForLog("worker serving");
    await waitFor(
      "the gateway to route to the process",
      () => gateway.runtime.capabilities.get("remote.stream.count")?.stream,
    );
    const client = await StreamClient.open(gateway.http.url);
    const { streamId } = client.start("remote.stream.count", { count: 2_000 });
    const frames = await client.ended(streamId);
    expect(data(frames)).toHaveLength(2_000);
    expect(new Set(data(frames).map((f) => f.payload.pid))).toEqual(new Set([worker.child.pid]));
    expect(frames.at(-1)).toMatchObject({ kind: "response", payload: { frames: 2_000 } });
    client.close();
  });

  it("ends a stream with MIG_UNAVAILABLE (retryable) when its worker is SIGKILLed, long before the deadline", async () => {
    const client = await StreamClient.open(gateway.http.url);
    const { streamId } = client.start("remote.stream.forever", {}, { deadlineMs: 600_000 });
    await client.until("frames from the worker", () => client.of(streamId).length > 10);
    await worker.stop("SIGKILL");
    const frames = await client.ended(streamId);
    expect(frames.at(-1)).toMatchObject({
      kind: "error",
      end_stream: true,
      error: { code: "MIG_UNAVAILABLE", retryable: true },
    });
    client.close();
  }, 30_000);
});
