// Requests start a chunk per turn of the event loop, in order, each chunk's answers handed to the bus before the
// next chunk starts; a flood past the waiting bound starts at once. Over a real NATS binding: a burst of 200
// requests from one caller, every one answered, started in the order sent, none started while more than one
// chunk's answers were still unwritten.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { ADMISSION_CHUNK, ChunkedAdmission } from "../runtime/chunked-admission.ts";
import { startNatsBinding, type NatsBinding } from "../bindings/nats/server.ts";
import { defineCapability } from "../runtime/provider.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("ChunkedAdmission", () => {
  it("starts at most a chunk per turn, in order, calling beforeChunk before each later chunk", async () => {
    const events: string[] = [];
    const admission = new ChunkedAdmission<number>(4, 1_000, (n) => events.push(`start ${n}`), () => events.push("flush"));
    for (let n = 0; n < 10; n++) admission.admit(n);
    expect(events).toEqual(["start 0", "start 1", "start 2", "start 3"]);
    await admission.whenEmpty();
    expect(events).toEqual([
      "start 0", "start 1", "start 2", "start 3",
      "flush", "start 4", "start 5", "start 6", "start 7",
      "flush", "start 8", "start 9",
    ]);
  });

  it("gives a new turn a whole chunk again", async () => {
    const started: number[] = [];
    const admission = new ChunkedAdmission<number>(3, 1_000, (n) => started.push(n), () => undefined);
    for (let n = 0; n < 3; n++) admission.admit(n);
    admission.admit(3); // this turn's chunk is used up: waits
    expect(started).toEqual([0, 1, 2]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3]);
    await nextTurn();
    await nextTurn();
    for (let n = 4; n < 7; n++) admission.admit(n);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("starts everything waiting, in order, once more than maxWaiting wait", async () => {
    const started: number[] = [];
    const admission = new ChunkedAdmission<number>(2, 5, (n) => started.push(n), () => undefined);
    for (let n = 0; n < 7; n++) admission.admit(n); // 0 and 1 start, 2..6 wait: five
    expect(started).toEqual([0, 1]);
    admission.admit(7); // the sixth waiting: all start, then it
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    admission.admit(8); // the turn's chunk is still used up: waits for the next turn
    expect(started).toHaveLength(8);
    await admission.whenEmpty();
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("whenEmpty resolves at once when nothing waits", async () => {
    const admission = new ChunkedAdmission<number>(2, 10, () => undefined, () => undefined);
    await expect(admission.whenEmpty()).resolves.toBeUndefined();
  });
});

describe("a burst of requests over the NATS binding", () => {
  let rt: TestRuntime;
  let binding: NatsBinding;
  let nc: NatsConnection;
  /** Per start, in order: the request's number and how many messages the runtime had handed to the bus by then. */
  const starts: { n: number; sent: number }[] = [];

  beforeAll(async () => {
    const counted = defineCapability(
      { id: "test.counted", version: "1.0.0", modes: ["unary"], input_schema_uri: "schema://test/counted/v1", output_schema_uri: "schema://test/counted/v1", auth_scopes: [] },
      (payload) => {
        starts.push({ n: Number(payload.n), sent: rt.runtime.bus.nc.stats().outMsgs });
        return { n: payload.n };
      },
      { "schema://test/counted/v1": { type: "object" } },
    );
    rt = await startTestRuntime({ capabilities: [counted] });
    binding = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
    nc = await natsClient(rt.runtime.natsUrl);
  });
  afterAll(async () => {
    await nc?.close();
    await binding?.close();
    await rt?.stop();
  });

  it("answers all 200, starts them in the order sent, and hands each chunk's answers to the bus before the next chunk starts", async () => {
    const count = 200;
    const before = rt.runtime.bus.nc.stats().outMsgs;
    // One caller's requests, flushed together: nats-server delivers them in this order.
    const answers = await Promise.all(
      Array.from({ length: count }, (_, n) => natsRequest(nc, "mig.v0_1.acme.invoke.test.counted", { payload: { n } })),
    );
    answers.forEach((answer, n) => {
      expect(answer.body.error, JSON.stringify(answer.body)).toBeUndefined();
      expect(answer.body.payload.n).toBe(n);
    });
    expect(starts.map((s) => s.n)).toEqual(Array.from({ length: count }, (_, n) => n));
    // Without chunks all 200 would run before the first answer left. With them, only the requests started in the
    // same turn (at most one chunk) can still be waiting for their answers to be handed to the bus.
    starts.forEach(({ n, sent }) => expect(sent - before, `request ${n}`).toBeGreaterThanOrEqual(n - ADMISSION_CHUNK));
  });
});
