// OpenTelemetry traces across real processes: `mig start` and `mig worker` export their spans over OTLP/HTTP to a
// receiver in this test, and each test checks the tree one request left: one trace id, each span's parent, the
// MIG attributes, across HTTP, NATS, the bus to the worker, streams, and an event stored and replayed.
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../client/index.ts";
import { tracingOffReason } from "../runtime/base/tracing-sdk.ts";
import { natsClient } from "./helpers/nats.ts";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "./helpers/otlp-receiver.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const SERVER = 2;
const CLIENT = 3;
const CONSUMER = 5;

let receiver: OtlpReceiver;
let gateway: MigProcess;
let worker: MigProcess;
let httpUrl: string;
let nc: NatsConnection;

const otel = () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "100" });

/** A caller's own span context, as a W3C traceparent. */
function callerTraceparent(): { traceparent: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceparent: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

/** The spans of one trace, once `count` of them have arrived. */
async function traceOf(traceId: string, count: number): Promise<ReceivedSpan[]> {
  await waitFor(`${count} spans of trace ${traceId}`, () => spansOf(traceId).length >= count, 20_000);
  return spansOf(traceId);
}

const spansOf = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);

function one(spans: ReceivedSpan[], name: string, service: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name && s.service === service);
  expect(found.map((s) => `${s.service} ${s.name}`)).toEqual([`${service} ${name}`]);
  return found[0]!;
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${httpUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  let busUrl: string;
  ({ gateway, busUrl, httpUrl } = await startGateway(otel()));
  worker = startMig(["worker", "test/fixtures/fleet-provider.ts", "test/fixtures/stream-provider.ts"], {
    MIG_NATS_URL: busUrl,
    ...otel(),
  });
  await worker.waitForLog("direct lane answering NATS invokes", 30_000);
  nc = await natsClient(busUrl);
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await worker?.stop("SIGKILL");
  await gateway?.stop("SIGKILL");
  await receiver?.close();
});

describe("traces over OTLP/HTTP", () => {
  it("an HTTP invocation served by a worker: gateway operation, actor, handler, then the worker's actor and handler", async () => {
    // The work crosses the bus with its parent in a NATS header too.
    const work: string[] = [];
    const watch = nc.subscribe("_MIG.work.>", {
      callback: (_err, msg) => void work.push(msg.headers?.get("traceparent") ?? "none"),
    });
    await nc.flush();
    const answer = await post("/mig/v0.1/invoke/fleet.echo", {
      header: { tenant_id: "acme" },
      payload: { hello: "trace" },
    });
    expect(answer.status, answer.text).toBe(200);
    const { header } = JSON.parse(answer.text);
    // The caller sent no traceparent: the trace starts at the gateway, and the answer names it.
    const traceId = String(header.traceparent).split("-")[1]!;
    const spans = await traceOf(traceId, 5);

    const operation = one(spans, "mig.invoke", "mig-gateway");
    expect(operation.parentSpanId).toBeUndefined();
    expect(operation.kind).toBe(SERVER);
    expect(operation.attributes).toMatchObject({
      "mig.binding": "http",
      "mig.capability": "fleet.echo",
      "mig.tenant": "acme",
      "mig.message_id": header.message_id,
      "mig.outcome": "completed",
    });
    const gatewayActor = one(spans, "mig.actor.invocation", "mig-gateway");
    expect(gatewayActor.parentSpanId).toBe(operation.spanId);
    const dispatch = one(spans, "mig.handler", "mig-gateway");
    expect(dispatch.parentSpanId).toBe(gatewayActor.spanId);
    expect(dispatch.kind).toBe(CLIENT);
    const workerActor = one(spans, "mig.actor.invocation", "mig-worker");
    expect(workerActor.parentSpanId).toBe(dispatch.spanId);
    expect(workerActor.kind).toBe(SERVER);
    expect(workerActor.attributes).toMatchObject({
      "mig.capability": "fleet.echo",
      "mig.message_id": header.message_id,
    });
    const provider = one(spans, "mig.handler", "mig-worker");
    expect(provider.parentSpanId).toBe(workerActor.spanId);
    expect(spans).toHaveLength(5);
    watch.unsubscribe();
    expect(work).toEqual([`00-${traceId}-${dispatch.spanId}-01`]);
  }, 30_000);

  it("a caller's traceparent is the parent, over HTTP and over NATS to a worker's direct lane", async () => {
    const http = callerTraceparent();
    const answer = await post(
      "/mig/v0.1/invoke/fleet.echo",
      { header: { tenant_id: "acme" }, payload: {} },
      { traceparent: http.traceparent },
    );
    expect(answer.status, answer.text).toBe(200);
    const overHttp = await traceOf(http.traceId, 5);
    expect(one(overHttp, "mig.invoke", "mig-gateway").parentSpanId).toBe(http.spanId);

    const viaNats = callerTraceparent();
    const h = natsHeaders();
    h.set("traceparent", viaNats.traceparent);
    const reply = await nc.request("mig.v0_1.acme.invoke.fleet.echo", JSON.stringify({ payload: { n: 1 } }), {
      timeout: 10_000,
      headers: h,
    });
    expect(reply.json<{ payload: unknown }>().payload).toBeDefined();
    // The worker answers the public subject itself: the whole trace is the worker's.
    const overNats = await traceOf(viaNats.traceId, 3);
    const operation = one(overNats, "mig.invoke", "mig-worker");
    expect(operation.parentSpanId).toBe(viaNats.spanId);
    expect(operation.attributes["mig.binding"]).toBe("nats");
    expect(one(overNats, "mig.actor.invocation", "mig-worker").parentSpanId).toBe(operation.spanId);
  }, 30_000);

  it("a caller's traceparent is the parent over gRPC and MCP (_meta) too", async () => {
    const grpcAddress = String((await gateway.waitForLog("gRPC binding listening")).addr);
    const viaGrpc = callerTraceparent();
    const client = await connect(`grpc://${grpcAddress}`, { tenant: "acme" });
    try {
      await client.invoke("fleet.echo", { over: "grpc" }, { traceparent: viaGrpc.traceparent });
    } finally {
      await client.close();
    }
    const overGrpc = await traceOf(viaGrpc.traceId, 5);
    const grpcOperation = one(overGrpc, "mig.invoke", "mig-gateway");
    expect(grpcOperation.parentSpanId).toBe(viaGrpc.spanId);
    expect(grpcOperation.attributes["mig.binding"]).toBe("grpc");

    const viaMcp = callerTraceparent();
    const res = await fetch(`${httpUrl}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
        "x-tenant-id": "acme",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: "fleet.echo", arguments: { over: "mcp" }, _meta: { traceparent: viaMcp.traceparent } },
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const overMcp = await traceOf(viaMcp.traceId, 5);
    const mcpOperation = one(overMcp, "mig.invoke", "mig-gateway");
    expect(mcpOperation.parentSpanId).toBe(viaMcp.spanId);
    expect(mcpOperation.attributes).toMatchObject({ "mig.mcp.method": "tools/call", "mig.mcp.name": "fleet.echo" });
  }, 30_000);

  it("a caller whose trace is not sampled leaves no span in any process", async () => {
    const unsampled = callerTraceparent();
    const notSampled = unsampled.traceparent.replace(/-01$/, "-00");
    const answer = await post(
      "/mig/v0.1/invoke/fleet.echo",
      { header: { tenant_id: "acme" }, payload: {} },
      { traceparent: notSampled },
    );
    expect(answer.status, answer.text).toBe(200);
    // A sampled call after it: once its spans are in, the unsampled one's would be too.
    const sampled = callerTraceparent();
    await post(
      "/mig/v0.1/invoke/fleet.echo",
      { header: { tenant_id: "acme" }, payload: {} },
      { traceparent: sampled.traceparent },
    );
    await traceOf(sampled.traceId, 5);
    expect(spansOf(unsampled.traceId)).toEqual([]);
  }, 30_000);

  it("a failed invocation's spans carry its MIG code and an error status", async () => {
    const caller = callerTraceparent();
    const answer = await post(
      "/mig/v0.1/invoke/fleet.echo",
      { header: { tenant_id: "acme", deadline_ms: 100 }, payload: { sleep_ms: 2_000 } },
      { traceparent: caller.traceparent },
    );
    expect(JSON.parse(answer.text).error.code).toBe("MIG_TIMEOUT");
    const spans = await traceOf(caller.traceId, 3);
    const operation = one(spans, "mig.invoke", "mig-gateway");
    expect(operation.attributes).toMatchObject({ "mig.outcome": "timed_out", "mig.error_code": "MIG_TIMEOUT" });
    expect(operation.status).toBe(2);
    expect(one(spans, "mig.actor.invocation", "mig-gateway").events).toContain("deadline");
  }, 30_000);

  it("a stream served by a worker: the gateway's stream span, and the worker's under it", async () => {
    const caller = callerTraceparent();
    const res = await fetch(`${httpUrl}/mig/v0.1/invoke/remote.stream.count`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: caller.traceparent },
      body: JSON.stringify({
        header: { tenant_id: "acme" },
        stream_preference: "server_stream",
        payload: { count: 3 },
      }),
    });
    const text = await res.text();
    expect(text.match(/"end_stream":false/g), text).toHaveLength(3);
    const spans = await traceOf(caller.traceId, 2);
    const gatewayStream = one(spans, "mig.stream", "mig-gateway");
    expect(gatewayStream.parentSpanId).toBe(caller.spanId);
    expect(gatewayStream.attributes).toMatchObject({
      "mig.binding": "http",
      "mig.capability": "remote.stream.count",
      "mig.outcome": "completed",
    });
    const workerStream = one(spans, "mig.stream", "mig-worker");
    expect(workerStream.parentSpanId).toBe(gatewayStream.spanId);
    expect(workerStream.kind).toBe(SERVER);
  }, 30_000);

  it("a stream's span marks the pause its slow reader caused, the resume when it read again, and its cancel", async () => {
    const caller = callerTraceparent();
    const controller = new AbortController();
    const res = await fetch(`${httpUrl}/mig/v0.1/invoke/remote.stream.forever`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: caller.traceparent },
      body: JSON.stringify({ header: { tenant_id: "acme" }, stream_preference: "server_stream", payload: {} }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    const paused = async () => /^mig_streams_paused 1$/m.test(await (await fetch(`${httpUrl}/metrics`)).text());
    // Not reading: the socket fills, then the stream's window, and the gateway pauses the provider.
    await waitFor("the stream to pause", paused, 20_000);
    // Reading again until the gateway has written what it held resumes it.
    while (await paused()) for (let i = 0; i < 64; i++) await reader.read();
    controller.abort();
    await waitFor(
      "the gateway's stream span",
      () => spansOf(caller.traceId).some((s) => s.name === "mig.stream"),
      20_000,
    );
    const stream = one(spansOf(caller.traceId), "mig.stream", "mig-gateway");
    expect(stream.events.slice(0, 2)).toEqual(["pause", "resume"]);
    expect(stream.events.at(-1)).toBe("cancel");
    expect(stream.attributes["mig.outcome"]).toBe("cancelled");
  }, 60_000);

  it("a PUBLISH, and a replay of its event days later, in one trace: the delivery is a child of the publish", async () => {
    const topic = `traced.${randomBytes(4).toString("hex")}`;
    const caller = callerTraceparent();
    const ack = await post(
      `/mig/v0.1/publish/${topic}`,
      { header: { tenant_id: "acme" }, payload: { n: 1 } },
      { traceparent: caller.traceparent },
    );
    expect(ack.status, ack.text).toBe(200);
    const publish = one(await traceOf(caller.traceId, 1), "mig.publish", "mig-gateway");
    expect(publish.parentSpanId).toBe(caller.spanId);
    expect(publish.attributes).toMatchObject({ "mig.topic": topic, "mig.binding": "http" });

    // A subscriber that comes later replays the stored event.
    const controller = new AbortController();
    const res = await fetch(`${httpUrl}/mig/v0.1/subscribe/${topic}?resume_cursor=0`, {
      headers: { "x-tenant-id": "acme" },
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes('"sequence":1')) seen += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    const spans = await traceOf(caller.traceId, 2);
    const delivery = one(spans, "mig.deliver", "mig-gateway");
    expect(delivery.parentSpanId).toBe(publish.spanId);
    expect(delivery.kind).toBe(CONSUMER);
    expect(delivery.attributes).toMatchObject({ "mig.topic": topic, "mig.sequence": 1, "mig.replay": true });
  }, 30_000);
});

describe("with tracing off", () => {
  it("nothing is exported, whatever the endpoint, when OTEL_TRACES_EXPORTER=none", async () => {
    const quiet = await startOtlpReceiver();
    const { gateway: silent, httpUrl: url } = await startGateway({
      OTEL_EXPORTER_OTLP_ENDPOINT: quiet.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_TRACES_EXPORTER: "none",
    });
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${url}/mig/v0.1/invoke/observatory.models.infer`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "quiet" } }),
        });
        expect(res.status).toBe(200);
      }
      // Its stop exports whatever an SDK would have buffered: still nothing arrives.
      await silent.stop("SIGTERM");
      expect(quiet.requests).toBe(0);
      expect(silent.logs.some((l) => l.msg === "tracing on: exporting spans over OTLP/HTTP")).toBe(false);
    } finally {
      await silent.stop("SIGKILL");
      await quiet.close();
    }
  }, 60_000);

  it("is the default: with no OTEL_* settings nothing reaches the OTLP port an SDK would default to", async () => {
    // An SDK loaded without an endpoint would export to http://localhost:4318.
    const defaultPort = await startOtlpReceiver(4318);
    const { gateway: plain, httpUrl: url } = await startGateway();
    try {
      const res = await fetch(`${url}/mig/v0.1/invoke/observatory.models.infer`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "plain" } }),
      });
      expect(res.status).toBe(200);
      await plain.stop("SIGTERM");
      expect(defaultPort.requests).toBe(0);
    } finally {
      await plain.stop("SIGKILL");
      await defaultPort.close();
    }
  }, 60_000);

  it("is off without an endpoint, and says why", () => {
    expect(tracingOffReason({})).toBe("no OTEL_EXPORTER_OTLP_ENDPOINT");
    expect(tracingOffReason({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" })).toBe(
      "OTEL_SDK_DISABLED=true",
    );
    expect(tracingOffReason({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" })).toBeUndefined();
    expect(
      tracingOffReason({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }),
    ).toMatch(/only OTLP over HTTP/);
  });
});
