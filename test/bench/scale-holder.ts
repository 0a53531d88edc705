// Holds a population open against a runtime for the scale row (run as its own process, so that the
// runtime, this holder and the unary load generator are three processes):
//   --kind sse: N SUBSCRIBE over SSE (one connection each), spread over T topics, left idle;
//   --kind ws:  N bidi streams of remote.stream.echo over WebSockets, P streams per socket, each
//               answered once (proof that it reaches the worker) and then left idle.
// Prints {"ready":true,...} once all are open, a status line ({"alive","lost"}) per stdin line, and
// closes everything and exits when stdin closes.
//   node --import tsx test/bench/scale-holder.ts --kind sse --url http://127.0.0.1:8080 --count 10000

import { randomUUID } from "node:crypto";
import http from "node:http";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values } = parseArgs({
  options: {
    kind: { type: "string" },
    url: { type: "string" },
    count: { type: "string" },
    topics: { type: "string", default: "100" },
    "per-socket": { type: "string", default: "100" },
    /** Opens in flight at once: enough to keep the runtime busy, few enough not to time out. */
    parallel: { type: "string", default: "64" },
  },
});
const KIND = values.kind;
const BASE = String(values.url);
const COUNT = Number(values.count);
const TOPICS = Number(values.topics);
const PER_SOCKET = Number(values["per-socket"]);
const PARALLEL = Number(values.parallel);
if (KIND !== "sse" && KIND !== "ws") throw new Error("--kind: sse or ws");
if (!Number.isInteger(COUNT) || COUNT < 1) throw new Error("--count: a positive integer");

const OPEN_TIMEOUT_MS = 30_000;
/** The longest deadline the runtime grants (MIG_MAX_DEADLINE_MS' default): streams outlive the measurement. */
const STREAM_DEADLINE_MS = 600_000;

let alive = 0;
let lost = 0;
let firstLoss: string | undefined;
let closing = false;
const closers: (() => void)[] = [];

function noteLoss(why: string): void {
  if (closing) return;
  alive--;
  lost++;
  firstLoss ??= why;
}

/** Runs `open(i)` for i < count, `parallel` at a time; rejects on the first failure. */
async function openAll(count: number, parallel: number, open: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await open(next++);
    }),
  );
}

// SSE: one connection per subscription, as EventSource clients hold them; no pooling limit.
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function openSubscription(i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const url = `${BASE}/mig/v0.1/subscribe/bench.scale.t${i % TOPICS}`;
    const req = http.get(url, { agent, headers: { "x-tenant-id": "bench", accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`subscription ${i}: HTTP ${res.statusCode}`));
        return;
      }
      res.setEncoding("utf8");
      let opened = false;
      res.on("data", (text: string) => {
        // The first frame is the ": subscribed …" comment, written once the consumer is in place.
        if (!opened && text.includes(": subscribed")) {
          opened = true;
          alive++;
          resolve();
        }
      });
      res.on("close", () =>
        opened
          ? noteLoss(`subscription ${i} closed by the runtime`)
          : reject(new Error(`subscription ${i} closed before it opened`)),
      );
    });
    req.setTimeout(OPEN_TIMEOUT_MS, () =>
      req.destroy(new Error(`subscription ${i} did not open within ${OPEN_TIMEOUT_MS} ms`)),
    );
    req.on("error", reject);
    req.on("response", () => req.setTimeout(0));
    closers.push(() => req.destroy());
  });
}

/** One socket and its streams: each stream gets its request, then one message it must echo. */
async function openSocket(first: number, count: number): Promise<void> {
  const ws = new WebSocket(`${BASE.replace(/^http/, "ws")}/mig/v0.1/stream`, {
    headers: { "x-tenant-id": "bench" },
    perMessageDeflate: false,
  });
  closers.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const waiting = new Map<string, (error?: string) => void>();
  const open = new Set<string>();
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString()) as {
      stream_id: string;
      kind: string;
      end_stream?: boolean;
      error?: { code: string; message: string };
    };
    const why = frame.error ? `${frame.error.code} ${frame.error.message}` : frame.kind;
    if (frame.end_stream && open.delete(frame.stream_id)) noteLoss(`stream ${frame.stream_id} ended: ${why}`);
    else waiting.get(frame.stream_id)?.(frame.end_stream ? why : undefined);
  });
  ws.on("close", () => {
    for (const id of open) noteLoss(`the socket of stream ${id} closed`);
    open.clear();
  });
  await openAll(count, 16, async (k) => {
    const streamId = `s${first + k}`;
    const echoed = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`stream ${streamId} did not echo within ${OPEN_TIMEOUT_MS} ms`)),
        OPEN_TIMEOUT_MS,
      );
      waiting.set(streamId, (error) => {
        clearTimeout(timer);
        waiting.delete(streamId);
        if (error) reject(new Error(`stream ${streamId} was refused: ${error}`));
        else resolve();
      });
    });
    const header = { tenant_id: "bench", message_id: randomUUID(), deadline_ms: STREAM_DEADLINE_MS };
    ws.send(
      JSON.stringify({ header, stream_id: streamId, capability: "remote.stream.echo", kind: "request", payload: {} }),
    );
    ws.send(
      JSON.stringify({
        header,
        stream_id: streamId,
        capability: "remote.stream.echo",
        kind: "request",
        payload: { ping: 1 },
      }),
    );
    await echoed;
    open.add(streamId);
    alive++;
  });
}

function print(value: unknown): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(value)}\n`, () => resolve()));
}

const started = performance.now();
try {
  if (KIND === "sse") {
    await openAll(COUNT, PARALLEL, openSubscription);
  } else {
    const sockets = Math.ceil(COUNT / PER_SOCKET);
    await openAll(sockets, Math.max(1, Math.floor(PARALLEL / 16)), (s) =>
      openSocket(s * PER_SOCKET, Math.min(PER_SOCKET, COUNT - s * PER_SOCKET)),
    );
  }
} catch (err) {
  await print({ ready: false, error: err instanceof Error ? err.message : String(err), alive });
  process.exit(2);
}
await print({ ready: true, opened: alive, open_s: Math.round(performance.now() - started) / 1000 });

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim()) await print({ alive, lost, ...(firstLoss ? { first_loss: firstLoss } : {}) });
}
closing = true;
for (const close of closers) close();
agent.destroy();
process.exit(0);
