// NATS streams of worker-served capabilities are handed off: the gateway checks the start, the worker publishes the frames and reads the inbound subject.

import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { type StreamOpen, streamOpenSubject } from "../runtime/fleet/remote-stream.ts";
import { StreamSession } from "../runtime/flow/stream-session.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import {
  decode,
  encode,
  leaveSubject,
  PROTOCOL_VERSION,
  registerSubject,
} from "../runtime/protocol/provider-protocol.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { count, echo, forever } from "./fixtures/stream-provider.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const log = join(mkdtempSync(join(tmpdir(), "mig-stream-handoff-")), "aborts.log");
process.env.STREAM_LOG = log;
const aborted = (messageId: string) =>
  (existsSync(log) ? readFileSync(log, "utf8") : "").split("\n").find((l) => l.startsWith(`aborted ${messageId}`));

let gateway: TestRuntime;
let binding: NatsBinding;
let workerRuntime: MigRuntime;
let host: WorkerHost;
let nc: NatsConnection;

beforeAll(async () => {
  gateway = await startTestRuntime({ config: { streamWindow: 16 } });
  binding = await startNatsBinding(gateway.runtime, new Authenticator("none"));
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
  // Without a fleet view: a CANCEL must reach its streams through the gateway's record, not the fan-out.
  workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
  host = await WorkerHost.start(workerRuntime, [count, forever, echo], { heartbeatMs: 500 });
  nc = await natsClient(gateway.runtime.natsUrl);
  await waitFor("the gateway to see the worker", () =>
    ["remote.stream.count", "remote.stream.forever", "remote.stream.echo"].every(
      (id) => gateway.runtime.capabilities.get(id)?.handOff,
    ),
  );
});
afterAll(async () => {
  await nc?.close();
  await host?.stop();
  await workerRuntime?.stop();
  await binding?.close();
  await gateway?.stop();
});

type Frame = Record<string, any>;
const data = (frames: Frame[]) => frames.filter((f) => !f.end_stream);
const terminals = (frames: Frame[]) => frames.filter((f) => f.end_stream);

/** A NATS consumer: subscribes, starts the stream, grants `batch` credits per batch read (unless told not to). */
async function consume(
  capability: string,
  payload: unknown,
  options: { deadlineMs?: number; grant?: boolean; messageId?: string; mode?: string } = {},
) {
  const streamId = `h-${randomUUID()}`;
  const messageId = options.messageId ?? randomUUID();
  const subject = `mig.v0_1.acme.stream.${streamId}`;
  const inbound = `${subject}.in`;
  const frames: Frame[] = [];
  const batch = 16;
  let read = 0;
  let ended!: () => void;
  const done = new Promise<void>((r) => (ended = r));
  const sub = nc.subscribe(subject, {
    callback: (_e, msg) => {
      const frame = msg.json<Frame>();
      frames.push(frame);
      if (frame.end_stream) return ended();
      if (++read === batch && options.grant !== false) {
        read = 0;
        nc.publish(inbound, JSON.stringify({ kind: "control", payload: { action: "credit", credit: batch } }));
      }
    },
  });
  await nc.flush();
  const header: Frame = { tenant_id: "acme", message_id: messageId };
  if (options.deadlineMs) header.deadline_ms = options.deadlineMs;
  const answer = (
    await natsRequest(nc, "mig.v0_1.acme.control.stream", {
      header,
      capability,
      payload,
      stream_id: streamId,
      stream_preference: options.mode ?? "server_stream",
    })
  ).body;
  if (!answer.error && options.grant !== false)
    nc.publish(inbound, JSON.stringify({ kind: "control", payload: { action: "credit", credit: batch } }));
  // The subscription stays: a second terminal frame would land in `frames` too (closed with the connection).
  void sub;
  /** Once the gateway has forgotten the stream, the worker has published all it will: its `{end}` follows its terminal frame. */
  const settled = async (gone: () => boolean = () => !gateway.runtime.work.streams.has(messageId)) => {
    await waitFor("the stream to be over everywhere", gone);
    await nc.flush();
  };
  return {
    streamId,
    messageId,
    subject,
    inbound,
    frames,
    answer,
    done,
    settled,
    send: (f: unknown) => nc.publish(inbound, typeof f === "string" ? f : JSON.stringify(f)),
  };
}

describe("a NATS stream of a worker-served capability", () => {
  it("runs in the worker, not the gateway: 5,000 frames in order, one terminal frame, the worker holding at most its window + 1", async () => {
    const s = await consume("remote.stream.count", { count: 5_000 });
    expect(s.answer).toMatchObject({
      stream_id: s.streamId,
      capability: "remote.stream.count",
      subject: s.subject,
      inbound_subject: s.inbound,
    });
    // Every frame carries the header the start was answered with (the caller's deadline_ms, not the time the worker had left).
    const header = s.answer.header;
    const atWorker = workerRuntime.work.streams.get(s.messageId);
    const atGateway = gateway.runtime.work.streams.get(s.messageId);
    await s.done;
    expect(atWorker).toBeInstanceOf(StreamSession);
    // The gateway keeps a record (the target of CANCEL) but runs no session of its own.
    expect(atGateway).toBeDefined();
    expect(atGateway).not.toBeInstanceOf(StreamSession);
    expect(data(s.frames).every((f, i) => f.payload.i === i)).toBe(true);
    expect(data(s.frames)).toHaveLength(5_000);
    await s.settled();
    expect(terminals(s.frames)).toEqual([
      expect.objectContaining({
        kind: "response",
        payload: { frames: 5_000 },
        stream_id: s.streamId,
        capability: "remote.stream.count",
      }),
    ]);
    expect((atWorker as StreamSession).highWater).toBeLessThanOrEqual(17);
    expect(new Set(s.frames.map((f) => JSON.stringify(f.header))).size).toBe(1);
    expect(s.frames[0]!.header).toEqual(header);
    await waitFor("the gateway to forget the stream", () => !gateway.runtime.work.streams.has(s.messageId));
  });

  it("CANCEL of its message id at the gateway reaches the worker's provider; one control terminal frame", async () => {
    const s = await consume("remote.stream.forever", {});
    await waitFor("frames", () => s.frames.length >= 20);
    const ack = await natsRequest(nc, `mig.v0_1.acme.control.cancel.${s.messageId}`, { reason: "enough" });
    expect(ack.body).toMatchObject({ target_message_id: s.messageId, accepted: true, status: "cancelled" });
    await s.done;
    await s.settled();
    expect(terminals(s.frames)).toHaveLength(1);
    expect(s.frames.at(-1)).toMatchObject({
      kind: "control",
      end_stream: true,
      payload: { status: "cancelled", reason: "enough" },
    });
    await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
    await waitFor("the gateway to forget the stream", () => !gateway.runtime.work.streams.has(s.messageId));
    // Afterwards the gateway still knows the id: a second CANCEL says it is over.
    const again = await natsRequest(nc, `mig.v0_1.acme.control.cancel.${s.messageId}`, {});
    expect(again.body).toMatchObject({ status: "already_completed" });
  });

  it("a CANCEL at another gateway of the fleet reaches it through the fan-out", async () => {
    const other = await startTestRuntime({ config: { natsUrl: gateway.runtime.natsUrl } });
    try {
      const s = await consume("remote.stream.forever", {});
      await waitFor("frames", () => s.frames.length >= 20);
      const ack = await other.post(`/mig/v0.1/cancel/${s.messageId}`, {
        header: { tenant_id: "acme" },
        reason: "from elsewhere",
      });
      expect(ack.body).toMatchObject({ target_message_id: s.messageId, accepted: true, status: "cancelled" });
      await s.done;
      await s.settled();
      expect(terminals(s.frames)).toEqual([
        expect.objectContaining({ kind: "control", payload: expect.objectContaining({ status: "cancelled" }) }),
      ]);
      await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
    } finally {
      await other.stop();
    }
  });

  it("a cancel frame on the inbound subject goes to the worker directly; one control terminal frame", async () => {
    const s = await consume("remote.stream.forever", {});
    await waitFor("frames", () => s.frames.length >= 20);
    s.send({ kind: "control", payload: { action: "cancel", reason: "stop" } });
    await s.done;
    await s.settled();
    expect(terminals(s.frames)).toEqual([
      expect.objectContaining({
        kind: "control",
        payload: expect.objectContaining({ status: "cancelled", reason: "stop" }),
      }),
    ]);
    await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
  });

  it("a deadline ends the never-ending stream with one MIG_TIMEOUT terminal frame", async () => {
    const s = await consume("remote.stream.forever", {}, { deadlineMs: 400 });
    await s.done;
    await s.settled();
    expect(terminals(s.frames)).toEqual([
      expect.objectContaining({ kind: "error", error: expect.objectContaining({ code: "MIG_TIMEOUT" }) }),
    ]);
    await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
    expect(aborted(s.messageId)).toContain("MIG_TIMEOUT");
  });

  it("bidi: request frames on the inbound subject reach the worker's provider in order", async () => {
    const s = await consume("remote.stream.echo", {}, { mode: "bidi_stream" });
    for (let i = 0; i < 300; i++) s.send({ kind: "request", payload: { i } });
    s.send({ kind: "request", end_stream: true });
    await s.done;
    expect(data(s.frames).map((f) => f.payload.echo.i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    await s.settled();
    expect(terminals(s.frames)).toEqual([expect.objectContaining({ kind: "response", payload: { received: 300 } })]);
  });

  it.each([
    ["not JSON", "{nope", "MIG_INVALID_REQUEST"],
    ["an unknown frame kind", { kind: "gossip", payload: {} }, "MIG_INVALID_REQUEST"],
    [
      "a credit that is not a positive integer",
      { kind: "control", payload: { action: "credit", credit: -3 } },
      "MIG_INVALID_REQUEST",
    ],
    ["a bidi frame to a server_stream", { kind: "request", payload: { i: 1 } }, "MIG_INVALID_REQUEST"],
  ])("bad input on the inbound subject (%s) ends the stream with one %s error frame", async (_what, input, code) => {
    const s = await consume("remote.stream.forever", {});
    await waitFor("frames", () => s.frames.length >= 5);
    s.send(input);
    await s.done;
    await s.settled();
    expect(terminals(s.frames)).toEqual([
      expect.objectContaining({ kind: "error", error: expect.objectContaining({ code }) }),
    ]);
    await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
  });

  it("the gateway refuses a bad start itself: a payload the schema refuses, a message id already streaming", async () => {
    const running = await consume("remote.stream.forever", {});
    const again = await consume("remote.stream.forever", {}, { messageId: running.messageId });
    expect(again.answer.error).toMatchObject({ code: "MIG_INVALID_REQUEST" });
    expect(again.answer.error.message).toMatch(/already in flight/);
    const bidiToServer = await consume("remote.stream.count", { count: 1 }, { mode: "bidi_stream" });
    expect(bidiToServer.answer.error).toMatchObject({ code: "MIG_UNSUPPORTED_CAPABILITY" });
    running.send({ kind: "control", payload: { action: "cancel" } });
    await running.done;
    await running.settled();
    expect(terminals(running.frames)).toHaveLength(1);
  });
});

describe("a gateway that stops", () => {
  it("cancels the streams it handed off (nobody would watch their worker): one control terminal frame from the worker", async () => {
    // Only the second gateway serves the start subject for this test.
    await binding.close();
    const other = await startTestRuntime({ config: { natsUrl: gateway.runtime.natsUrl } });
    const otherBinding = await startNatsBinding(other.runtime, new Authenticator("none"));
    let stopped = false;
    try {
      await waitFor(
        "the second gateway to see the worker",
        () => other.runtime.capabilities.get("remote.stream.forever")?.handOff,
      );
      const s = await consume("remote.stream.forever", {});
      await waitFor("frames", () => s.frames.length >= 20);
      expect(other.runtime.work.streams.has(s.messageId)).toBe(true);
      await otherBinding.close();
      await other.stop();
      stopped = true;
      await s.done;
      await s.settled(() => !workerRuntime.work.streams.has(s.messageId));
      expect(terminals(s.frames)).toEqual([
        expect.objectContaining({
          kind: "control",
          payload: expect.objectContaining({ status: "cancelled", reason: "the runtime is shutting down" }),
        }),
      ]);
      await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
    } finally {
      if (!stopped) await otherBinding.close().then(() => other.stop());
      binding = await startNatsBinding(gateway.runtime, new Authenticator("none"));
    }
  });
});

describe("the hand-off protocol, spoken by a provider on plain NATS (provider-protocol.md §6.1)", () => {
  const schema = "schema://test/plain-any/v1";
  const descriptor = (id: string) => ({
    id,
    version: "1.0.0",
    modes: ["server_stream"],
    input_schema_uri: schema,
    output_schema_uri: schema,
    auth_scopes: [],
  });
  let plain: NatsConnection;
  const oldCancels: Record<string, unknown>[] = [];
  beforeAll(async () => {
    plain = await natsClient(gateway.runtime.natsUrl);
    // plain.ticks: three frames against the caller's credit, then the result. plain.refuses: ends before opening. plain.silent: never answers.
    plain.subscribe(streamOpenSubject("plain.ticks"), {
      queue: "mig-workers",
      callback: (_e, msg) => {
        const open = decode(msg.data) as StreamOpen & { nats_stream_id: string };
        const subject = `mig.v0_1.${open.header.tenant_id}.stream.${open.nats_stream_id}`;
        let sent = 0;
        const frame = (extra: Record<string, unknown>) =>
          JSON.stringify({
            header: open.header,
            stream_id: open.nats_stream_id,
            capability: open.capability,
            ...extra,
          });
        plain.subscribe(`${subject}.in`, {
          max: 1,
          callback: (_e2, m) => {
            const credit = m.json<{ payload: { credit: number } }>().payload.credit;
            while (sent < Math.min(3, credit))
              plain.publish(subject, frame({ kind: "response", end_stream: false, payload: { tick: sent++ } }));
            plain.publish(subject, frame({ kind: "response", end_stream: true, payload: { ticks: sent } }));
            plain.publish(open.reply_to!, encode({ end: true, ok: true, payload: {} }));
          },
        });
        plain.publish(open.reply_to!, encode({ open: "plain-1", control: "_MIG.swk.plain.1", window: 16, nats: true }));
      },
    });
    plain.subscribe(streamOpenSubject("plain.refuses"), {
      queue: "mig-workers",
      callback: (_e, msg) => {
        const open = decode(msg.data) as StreamOpen;
        plain.publish(
          open.reply_to!,
          encode({ end: true, ok: false, error: { code: "MIG_UNAVAILABLE", message: "no GPU free", retryable: true } }),
        );
      },
    });
    plain.subscribe(streamOpenSubject("plain.silent"), { queue: "mig-workers", callback: () => undefined });
    // A provider from before the hand-off: answers the open as one to relay, and hears the gateway's cancel.
    plain.subscribe(streamOpenSubject("plain.old"), {
      queue: "mig-workers",
      callback: (_e, msg) => {
        const open = decode(msg.data) as StreamOpen;
        plain.subscribe("_MIG.swk.plain.old", {
          max: 1,
          callback: (_e2, m) => void oldCancels.push(decode(m.data) as Record<string, unknown>),
        });
        plain.publish(open.reply_to!, encode({ open: "plain-1", control: "_MIG.swk.plain.old", window: 16 }));
      },
    });
    const record = {
      v: PROTOCOL_VERSION,
      provider_id: "plain-1",
      heartbeat_ms: 60_000,
      started_at: new Date().toISOString(),
      capabilities: ["plain.ticks", "plain.refuses", "plain.silent", "plain.old"].map((id) => ({
        descriptor: descriptor(id),
        schemas: { [schema]: { type: "object" } },
      })),
    };
    plain.publish(registerSubject("plain-1"), JSON.stringify(record));
    await waitFor("the plain provider's capabilities", () =>
      ["plain.ticks", "plain.refuses", "plain.silent"].every((id) => gateway.runtime.capabilities.get(id)?.handOff),
    );
  });
  afterAll(async () => {
    plain?.publish(leaveSubject("plain-1"));
    await plain?.close();
  });

  it("the provider's frames and terminal frame reach the caller as it published them", async () => {
    const s = await consume("plain.ticks", {});
    await s.done;
    expect(s.frames.map((f) => f.payload)).toEqual([{ tick: 0 }, { tick: 1 }, { tick: 2 }, { ticks: 3 }]);
    await s.settled();
    expect(terminals(s.frames)).toHaveLength(1);
    await waitFor("the gateway to forget the stream", () => !gateway.runtime.work.streams.has(s.messageId));
  });

  it("a provider that refuses the open: the caller's start is answered with its error", async () => {
    const s = await consume("plain.refuses", {});
    expect(s.answer.error).toMatchObject({ code: "MIG_UNAVAILABLE", message: "no GPU free", retryable: true });
    expect(gateway.runtime.work.streams.has(s.messageId)).toBe(false);
  });

  it("a provider that answers the open as one to relay (from before the hand-off): MIG_UNAVAILABLE, and it is told to stop", async () => {
    const s = await consume("plain.old", {});
    expect(s.answer.error).toMatchObject({ code: "MIG_UNAVAILABLE", retryable: true });
    await waitFor("the cancel on its control subject", () => oldCancels.length === 1);
    expect(oldCancels[0]).toMatchObject({ cancel: expect.any(String) });
  });

  it("a provider that never answers the open: MIG_UNAVAILABLE once the wait (here the deadline) is over", async () => {
    const s = await consume("plain.silent", {}, { deadlineMs: 300 });
    expect(s.answer.error).toMatchObject({ code: "MIG_UNAVAILABLE", retryable: true });
    expect(gateway.runtime.work.streams.has(s.messageId)).toBe(false);
  });
});

describe("a worker leaving with handed-off streams", () => {
  it("reports no end for them: the gateways end them on its leave, and an end heard first would make them forget the stream", async () => {
    const config = loadConfig(
      { natsUrl: gateway.runtime.natsUrl, dataDir: gateway.dataDir, logLevel: "silent", streamWindow: 16 },
      {},
    );
    const leaver = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
    // Its own capability id, so the open reaches this worker and not the file's other one.
    const id = "remote.stream.forever.leaving";
    const leaverHost = await WorkerHost.start(leaver, [{ ...forever, descriptor: { ...forever.descriptor, id } }], {
      heartbeatMs: 500,
    });
    const streamId = `leave-${randomUUID()}`;
    const replyTo = `_MIG.test.${randomUUID()}`;
    const toGateway: Record<string, any>[] = [];
    const frames: Frame[] = [];
    nc.subscribe(replyTo, { callback: (_e, msg) => void toGateway.push(decode(msg.data) as Record<string, any>) });
    nc.subscribe(`mig.v0_1.acme.stream.${streamId}`, { callback: (_e, msg) => void frames.push(msg.json()) });
    await nc.flush();
    const header = { tenant_id: "acme", message_id: randomUUID(), deadline_ms: 60_000 };
    const open: StreamOpen = {
      v: PROTOCOL_VERSION,
      capability: id,
      header: header as StreamOpen["header"],
      payload: {},
      principal: { subject: "anonymous", scopes: [], authenticated: false },
      deadline_at: Date.now() + 60_000,
      reply_to: replyTo,
      mode: "server_stream",
      nats_stream_id: streamId,
    };
    nc.publish(streamOpenSubject(id), encode(open));
    await waitFor("the worker's open", () => toGateway.length > 0);
    nc.publish(
      `mig.v0_1.acme.stream.${streamId}.in`,
      JSON.stringify({ kind: "control", payload: { action: "credit", credit: 4 } }),
    );
    await waitFor("frames from the worker", () => frames.length > 0);
    await leaverHost.stop();
    await leaver.stop(); // cancels the session: before, its end went to the gateway
    await nc.flush();
    await new Promise((r) => setTimeout(r, 200));
    await nc.flush();
    expect(toGateway.map((m) => Object.keys(m).sort().join(","))).toEqual(["control,nats,open,window"]);
    expect(terminals(frames)).toEqual([]);
  });
});

describe("a handed-off stream whose `mig worker` process leaves", () => {
  const startWorker = async () => {
    const worker = startMig(["worker", "test/fixtures/stream-provider.ts"], {
      MIG_NATS_URL: gateway.runtime.natsUrl,
      MIG_PROVIDER_HEARTBEAT_MS: "500",
      STREAM_LOG: log,
    });
    await worker.waitForLog("worker serving");
    await waitFor(
      "the gateway to route to the process",
      () => gateway.runtime.capabilities.get("remote.stream.forever")?.handOff,
    );
    return worker;
  };
  beforeAll(async () => {
    await host.stop(); // only a process serves now
    await workerRuntime.stop();
    await waitFor(
      "the gateway to see the in-process worker leave",
      () => !gateway.runtime.capabilities.get("remote.stream.forever"),
    );
  });

  it("stopping (SIGTERM): one MIG_UNAVAILABLE (retryable) terminal frame, the gateway's, and nothing from the worker after it", async () => {
    const worker = await startWorker();
    try {
      const s = await consume("remote.stream.forever", {}, { deadlineMs: 600_000 });
      await waitFor("frames from the worker", () => s.frames.length > 10);
      await worker.stop("SIGTERM");
      await s.done;
      expect(s.frames.at(-1)).toMatchObject({
        kind: "error",
        end_stream: true,
        stream_id: s.streamId,
        error: { code: "MIG_UNAVAILABLE", retryable: true },
      });
      await waitFor("the gateway to forget the stream", () => !gateway.runtime.work.streams.has(s.messageId));
      // The worker's own cancel at its runtime's stop went nowhere; the gateway's frame stays the only terminal one.
      await waitFor("the worker's provider to be aborted", () => aborted(s.messageId));
      await nc.flush();
      await s.settled();
      expect(terminals(s.frames)).toHaveLength(1);
    } finally {
      await worker.stop();
    }
  }, 30_000);

  it("dying (SIGKILL): one MIG_UNAVAILABLE (retryable) terminal frame from the gateway, long before its deadline", async () => {
    const worker = await startWorker();
    try {
      const s = await consume("remote.stream.forever", {}, { deadlineMs: 600_000 });
      await waitFor("frames from the worker", () => s.frames.length > 10);
      await worker.stop("SIGKILL");
      await s.done;
      expect(s.frames.at(-1)).toMatchObject({
        kind: "error",
        end_stream: true,
        stream_id: s.streamId,
        error: { code: "MIG_UNAVAILABLE", retryable: true },
      });
      await waitFor("the gateway to forget the stream", () => !gateway.runtime.work.streams.has(s.messageId));
      await s.settled();
      expect(terminals(s.frames)).toHaveLength(1);
    } finally {
      await worker.stop();
    }
  }, 30_000);
});
