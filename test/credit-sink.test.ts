// The NATS stream sink: frames go out only against the consumer's credit, and a grant's frames leave before the provider is woken.
// On a real nats-server (the test runtime's); the sink's connection records each publish it passes on.

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CreditSink } from "../bindings/nats/credit-sink.ts";
import type { StreamFrame } from "../schemas/types.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const header = {
  mig_version: "0.1",
  message_id: "7d0f4c8e-4b8e-4a43-9a4e-0c5d1b2e3f40",
  timestamp: "2026-12-07T00:00:00.000Z",
  tenant_id: "acme",
  deadline_ms: 30_000,
};
const data = (i: number): StreamFrame => ({
  header,
  stream_id: "s1",
  capability: "test.stream.count",
  kind: "response",
  end_stream: false,
  payload: { i },
});
const decoder = new TextDecoder();

let t: TestRuntime;
let client: NatsConnection;
beforeAll(async () => {
  t = await startTestRuntime();
  client = await connect({ servers: t.runtime.natsUrl });
});
afterAll(async () => {
  await client?.close();
  await t?.stop();
});

let streams = 0;

/** A sink on its own subject that records, in order, what it published and which frames' credits came back. */
function recordingSink() {
  const events: string[] = [];
  const subject = `mig.v0_1.acme.stream.s${++streams}`;
  const publish = client.publish.bind(client);
  const nc = Object.create(client) as NatsConnection;
  nc.publish = (subj, bytes, options) => {
    const frame = JSON.parse(decoder.decode(bytes as Uint8Array)) as StreamFrame;
    events.push(frame.end_stream ? `publish end` : `publish ${(frame.payload as { i: number }).i}`);
    publish(subj, bytes, options);
  };
  const sink = new CreditSink(nc, subject);
  const write = (frame: StreamFrame) =>
    sink.write(frame, () => events.push(`written ${(frame.payload as { i: number }).i}`));
  return { sink, events, write, subject };
}

const microtasks = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("CreditSink", () => {
  it("publishes nothing without credit; a grant publishes that many held frames, oldest first", async () => {
    const { sink, events, write, subject } = recordingSink();
    const received: number[] = [];
    client.subscribe(subject, {
      callback: (_e, msg) => void received.push(msg.json<{ payload: { i: number } }>().payload.i),
    });
    await client.flush();
    for (let i = 0; i < 3; i++) write(data(i));
    await microtasks();
    expect(events).toEqual([]);

    sink.grant(2);
    await microtasks();
    expect(events.filter((e) => e.startsWith("publish"))).toEqual(["publish 0", "publish 1"]);
    expect(events.filter((e) => e.startsWith("written"))).toEqual(["written 0", "written 1"]);
    await waitFor("the granted frames at a subscriber", () => received.length === 2);
    expect(received).toEqual([0, 1]);
  });

  it("hands a grant's frames to the client before it wakes the provider (their written callbacks)", async () => {
    const { sink, events, write } = recordingSink();
    for (let i = 0; i < 4; i++) write(data(i));
    sink.grant(4);
    // Published within grant(); the credits come back only after the client's flush (a microtask queued first).
    expect(events).toEqual(["publish 0", "publish 1", "publish 2", "publish 3"]);
    await microtasks();
    expect(events.slice(4)).toEqual(["written 0", "written 1", "written 2", "written 3"]);
  });

  it("frames emitted while credit is left go out together at the end of the turn", async () => {
    const { sink, events, write } = recordingSink();
    sink.grant(10);
    write(data(0));
    write(data(1));
    expect(events).toEqual([]);
    await microtasks();
    expect(events).toEqual(["publish 0", "publish 1", "written 0", "written 1"]);
  });

  it("the terminal frame goes out at once, without credit, and the frames still held are dropped", async () => {
    const { sink, events, write } = recordingSink();
    write(data(0));
    write(data(1));
    sink.write(
      {
        header,
        stream_id: "s1",
        capability: "test.stream.count",
        kind: "response",
        end_stream: true,
        payload: { frames: 2 },
      },
      () => undefined,
    );
    sink.grant(5);
    await microtasks();
    expect(events).toEqual(["publish end"]);
  });

  it("a muted sink publishes nothing, and still gives each frame's credit back", async () => {
    const { sink, events, write } = recordingSink();
    sink.grant(5);
    sink.mute();
    write(data(0));
    await microtasks();
    expect(events).toEqual(["written 0"]);
  });
});
