// The HTTP listener under hostile clients, over real sockets: abandoned invocations are cancelled, deep JSON is
// refused before anything runs, refused bodies still get their answer, slow and surplus connections are cut
// with a MIG envelope, only JSON bodies are executed, and one WebSocket cannot open streams without bound.
import { execFile } from "node:child_process";
import { Agent, type IncomingMessage, request } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { ROOT } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { type Frame, StreamClient } from "./helpers/stream-client.ts";

const calls = { slow: 0, echo: 0 };
let aborted = 0;

const slow = defineCapability(
  anyDescriptor("test.slow", ["unary"]),
  (_payload, { signal }) => {
    calls.slow++;
    return new Promise((_resolve, reject) => {
      signal.addEventListener("abort", () => {
        aborted++;
        reject(signal.reason);
      });
    });
  },
  anySchemas,
);

/** Answers after `ms` milliseconds (for answers that outlast the request timeout). */
const later = defineCapability(
  anyDescriptor("test.later", ["unary"]),
  (payload) => new Promise((resolve) => setTimeout(() => resolve({ waited: payload.ms }), Number(payload.ms))),
  anySchemas,
);

const echo = defineCapability(
  anyDescriptor("test.echo", ["unary"]),
  (payload) => {
    calls.echo++;
    return { echoed: payload };
  },
  anySchemas,
);

/** Returns a value JSON cannot encode: the answer's serialization fails after the capability ran. */
const unencodable = defineCapability(anyDescriptor("test.unencodable", ["unary"]), () => ({ n: 1n }), anySchemas);

const streamUnencodable = defineStreamingCapability(
  anyDescriptor("test.stream.unencodable", ["server_stream"]),
  async (_payload, { emit }) => {
    await emit({ i: 0 });
    await emit({ n: 1n });
  },
  anySchemas,
);

/** One frame, then open until cancelled. */
const parked = defineStreamingCapability(
  anyDescriptor("test.stream.parked", ["server_stream"]),
  async (_payload, { emit, signal }) => {
    await emit({ parked: true });
    await new Promise((resolve) => signal.addEventListener("abort", resolve));
  },
  anySchemas,
);

/** `count` frames, `every` ms apart. */
const ticks = defineStreamingCapability(
  anyDescriptor("test.stream.ticks", ["server_stream"]),
  async (payload, { emit }) => {
    for (let i = 0; i < Number(payload.count); i++) {
      await emit({ i });
      await new Promise((resolve) => setTimeout(resolve, Number(payload.every)));
    }
  },
  anySchemas,
);

const run = promisify(execFile);
const LIMIT = 64 * 1024;
const HEADERS_TIMEOUT_MS = 400;
const REQUEST_TIMEOUT_MS = 1000;

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [slow, later, echo, unencodable, streamUnencodable, parked, ticks],
    config: {
      capacity: 8,
      // One tenant may fill the capacity here, so that an abandoned tenant's work is what blocks the other.
      tenantMaxInflight: 8,
      maxBodyBytes: LIMIT,
      httpHeadersTimeoutMs: HEADERS_TIMEOUT_MS,
      httpRequestTimeoutMs: REQUEST_TIMEOUT_MS,
      wsMaxStreams: 4,
    },
  });
});
afterAll(() => t?.stop());

const acme = { tenant_id: "acme" };

const deepText = (levels: number) => "[".repeat(levels) + "]".repeat(levels);

interface RawAnswer {
  status: number;
  headers: IncomingMessage["headers"];
  body: any;
}

/** One request over node:http with the exact headers given (no content-type unless named). */
function send(
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
  agent?: Agent,
): Promise<RawAnswer> {
  const url = new URL(t.http.url + path);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: "POST", headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Writes `chunks` to a raw socket one by one, `gapMs` apart, and collects what the server says until it closes. */
function trickle(url: string, chunks: string[], gapMs: number): Promise<{ text: string; sentAll: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(port), hostname);
    let text = "";
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => (text += c));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ text, sentAll: sent === chunks.length });
    });
    const next = () => {
      if (socket.destroyed) return;
      if (sent === chunks.length) {
        // Everything sent: the server answers (or not) and the test reads it; close after a grace.
        timer = setTimeout(() => socket.destroy(), 2000);
        return;
      }
      socket.write(chunks[sent++]!);
      timer = setTimeout(next, gapMs);
    };
    socket.on("connect", next);
  });
}

/** Splits a raw HTTP/1.1 answer into its status and JSON body. */
function parseRaw(text: string): { status: number; headers: string; body: any } {
  const split = text.indexOf("\r\n\r\n");
  const head = text.slice(0, split);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const rest = text.slice(split + 4);
  return { status, headers: head.toLowerCase(), body: rest ? JSON.parse(rest) : undefined };
}

describe("an invocation whose HTTP client went away", () => {
  it("is cancelled: its provider is aborted and its capacity serves another tenant", async () => {
    const before = { calls: calls.slow, aborted };
    const url = new URL(t.http.url);
    const body = JSON.stringify({ header: acme, payload: {} });
    const pending = Array.from({ length: 8 }, () => {
      const req = request({
        host: url.hostname,
        port: url.port,
        path: "/mig/v0.1/invoke/test.slow",
        method: "POST",
        headers: { "content-type": "application/json" },
      });
      req.on("error", () => undefined);
      req.end(body);
      return req;
    });
    await waitFor("8 slow invocations to start", () => calls.slow - before.calls === 8);
    const full = await t.post("/mig/v0.1/invoke/test.echo", { header: { tenant_id: "globex" }, payload: {} });
    expectError(full, 503, "MIG_BACKPRESSURE");

    for (const req of pending) req.destroy();
    await waitFor("the 8 providers to see their abort", () => aborted - before.aborted === 8, 5000);
    await waitFor("the capacity to be free", () => t.runtime.work.invocations.size === 0, 5000);
    const res = await t.post("/mig/v0.1/invoke/test.echo", {
      header: { tenant_id: "globex" },
      payload: { after: true },
    });
    expect(res.status).toBe(200);
    expect(res.body.payload).toEqual({ echoed: { after: true } });
  });

  it("with an idempotency key, frees the key: a retry runs the work again instead of replaying the cancel", async () => {
    const url = new URL(t.http.url);
    const body = JSON.stringify({ header: { ...acme, idempotency_key: `drop-${Date.now()}` }, payload: {} });
    const start = () => {
      const req = request({
        host: url.hostname,
        port: url.port,
        path: "/mig/v0.1/invoke/test.slow",
        method: "POST",
        headers: { "content-type": "application/json" },
      });
      req.on("error", () => undefined);
      req.end(body);
      return req;
    };
    const before = { calls: calls.slow, aborted };
    const first = start();
    await waitFor("the first run to start", () => calls.slow - before.calls === 1);
    first.destroy();
    await waitFor("the first run to be aborted", () => aborted - before.aborted === 1, 5000);
    await waitFor("the capacity to be free", () => t.runtime.work.invocations.size === 0, 5000);
    const retry = start();
    await waitFor("the retry to run the capability again", () => calls.slow - before.calls === 2, 5000);
    retry.destroy();
    await waitFor("the retry to be aborted", () => aborted - before.aborted === 2, 5000);
  });
});

describe("deeply nested JSON", () => {
  it("a unary INVOKE nested 5,000 levels is refused with 400 before the capability runs", async () => {
    const before = calls.echo;
    const res = await t.post(
      "/mig/v0.1/invoke/test.echo",
      `{"header":{"tenant_id":"acme"},"payload":{"deep":${deepText(5000)}}}`,
    );
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toMatch(/deeper than 64 levels/);
    expect(res.body.error.details).toEqual({ max_json_depth: 64 });
    expect(calls.echo).toBe(before);
  });

  it("a HELLO nested 5,000 levels is refused with 400", async () => {
    const res = await t.post("/mig/v0.1/hello", `{"header":{"tenant_id":"acme","meta":{"x":${deepText(5000)}}}}`);
    expectError(res, 400, "MIG_INVALID_REQUEST");
  });

  it("an SSE stream with a deep header.meta gets 400 before any 200", async () => {
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.stream.ticks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"header":{"tenant_id":"acme","meta":{"x":${deepText(5000)}}},"payload":{"count":1,"every":1},"stream_preference":"server_stream"}`,
    });
    expect(res.status).toBe(400);
    expectError({ status: res.status, body: await res.json() }, 400, "MIG_INVALID_REQUEST");
  });

  it("a WebSocket frame with a deep header.meta gets an error frame, and the socket keeps serving", async () => {
    const client = await StreamClient.open(t.http.url);
    try {
      client.send(
        `{"header":{"tenant_id":"acme","meta":{"x":${deepText(5000)}}},"stream_id":"deep","capability":"test.stream.ticks","kind":"request","payload":{"count":1,"every":1}}`,
      );
      await client.until("an error frame", () => client.all.some((f) => f.kind === "error"));
      const error = client.all.find((f) => f.kind === "error")!;
      expectEnvelope("StreamFrame", error);
      expect(error.error.code).toBe("MIG_INVALID_REQUEST");
      expect(error.error.message).toMatch(/deeper than 64 levels/);
      const { streamId } = client.start("test.stream.ticks", { count: 2, every: 1 });
      const frames = await client.ended(streamId);
      expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true });
    } finally {
      client.close();
    }
  });
});

describe("an answer JSON cannot encode", () => {
  it("a unary answer is a 500 MIG envelope", async () => {
    const res = await t.post("/mig/v0.1/invoke/test.unencodable", { header: acme, payload: {} });
    expectError(res, 500, "MIG_INTERNAL");
  });

  it("an SSE stream ends with a terminal error frame", async () => {
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.stream.unencodable`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: acme, payload: {}, stream_preference: "server_stream" }),
    });
    expect(res.status).toBe(200);
    const frames = (await res.text())
      .split("\n\n")
      .filter(Boolean)
      .map((e) => JSON.parse(e.split("\n")[1]!.slice("data: ".length)) as Frame);
    expect(frames.at(-1)).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_INTERNAL" } });
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
  });

  it("a WebSocket stream ends with a terminal error frame, and the socket keeps serving", async () => {
    const client = await StreamClient.open(t.http.url);
    try {
      const bad = client.start("test.stream.unencodable", {});
      const frames = await client.ended(bad.streamId);
      expect(frames.at(-1)).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_INTERNAL" } });
      const good = client.start("test.stream.ticks", { count: 2, every: 1 });
      expect((await client.ended(good.streamId)).at(-1)).toMatchObject({ kind: "response" });
    } finally {
      client.close();
    }
  });
});

describe("a body over the size limit", () => {
  /** Runs test/fixtures/post-large.ts as its own process and returns its counts of outcomes. */
  async function postLarge(bytes: number, tries: number, mode: "length" | "chunked"): Promise<Record<string, number>> {
    const { stdout } = await run(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "test/fixtures/post-large.ts"),
        `${t.http.url}/mig/v0.1/invoke/test.echo`,
        String(bytes),
        String(tries),
        mode,
      ],
      { cwd: ROOT },
    );
    return JSON.parse(stdout) as Record<string, number>;
  }

  it("gets its 413 envelope every time, with a Content-Length (5 MiB, 30 tries)", async () => {
    expect(await postLarge(5 * 1024 * 1024, 30, "length")).toEqual({ "413 MIG_INVALID_REQUEST": 30 });
  });

  it("gets its 413 envelope every time, chunked (5 MiB, 30 tries)", async () => {
    expect(await postLarge(5 * 1024 * 1024, 30, "chunked")).toEqual({ "413 MIG_INVALID_REQUEST": 30 });
  });

  it("past the drain bound the connection is closed, and the server keeps serving", async () => {
    const outcomes = await postLarge(12 * 1024 * 1024, 1, "length");
    expect(Object.keys(outcomes)[0]).toMatch(/^(413 MIG_INVALID_REQUEST|failed: )/);
    expect((await t.post("/mig/v0.1/invoke/test.echo", { header: acme, payload: {} })).status).toBe(200);
  });
});

describe("slow clients", () => {
  it("headers sent one byte at a time are cut after the headers timeout with a 408 envelope", async () => {
    const head = `POST /mig/v0.1/hello HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-tenant-id: acme\r\nx-padding: ${"p".repeat(200)}\r\n\r\n`;
    const { text, sentAll } = await trickle(t.http.url, [...head], 25);
    expect(sentAll).toBe(false);
    const answer = parseRaw(text);
    expect(answer.status).toBe(408);
    expectEnvelope("ErrorEnvelope", answer.body);
    expect(answer.body.error.code).toBe("MIG_TIMEOUT");
  });

  it("a body trickled one byte at a time is cut after the request timeout with a 408 envelope", async () => {
    const body = JSON.stringify({ header: acme, payload: { pad: "p".repeat(300) } });
    const head = `POST /mig/v0.1/invoke/test.echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
    const before = calls.echo;
    const { text, sentAll } = await trickle(t.http.url, [head, ...body], 25);
    expect(sentAll).toBe(false);
    const answer = parseRaw(text);
    expect(answer.status).toBe(408);
    expectEnvelope("ErrorEnvelope", answer.body);
    expect(calls.echo).toBe(before);
  });

  it("an answer that takes longer than the request timeout is not cut", async () => {
    const res = await t.post("/mig/v0.1/invoke/test.later", { header: acme, payload: { ms: 2 * REQUEST_TIMEOUT_MS } });
    expect(res.status).toBe(200);
    expect(res.body.payload).toEqual({ waited: 2 * REQUEST_TIMEOUT_MS });
  });

  it("an SSE stream that lasts longer than the request timeout is not cut", async () => {
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.stream.ticks`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: acme, payload: { count: 20, every: 100 }, stream_preference: "server_stream" }),
    });
    const frames = (await res.text()).split("\n\n").filter(Boolean);
    expect(frames).toHaveLength(21);
    expect(frames.at(-1)).toContain('"kind":"response"');
  });

  it("a WebSocket that lives longer than the request timeout is not cut", async () => {
    const client = await StreamClient.open(t.http.url);
    try {
      const { streamId } = client.start("test.stream.ticks", { count: 20, every: 100 });
      const frames = await client.ended(streamId);
      expect(frames).toHaveLength(21);
    } finally {
      client.close();
    }
  });
});

describe("content types", () => {
  it("a text/plain POST is refused with 415 and not executed", async () => {
    const before = calls.echo;
    const res = await send("/mig/v0.1/invoke/test.echo", JSON.stringify({ header: acme, payload: {} }), {
      "content-type": "text/plain",
    });
    expectError(res, 415, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain("application/json");
    expect(calls.echo).toBe(before);
  });

  it("a form POST (curl -d's default) and a typeless non-empty body are refused with 415", async () => {
    const body = JSON.stringify({ header: acme, payload: {} });
    expectError(
      await send("/mig/v0.1/invoke/test.echo", body, { "content-type": "application/x-www-form-urlencoded" }),
      415,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await send("/mig/v0.1/invoke/test.echo", body, { "content-length": String(body.length) }),
      415,
      "MIG_INVALID_REQUEST",
    );
  });

  it("an empty body without a content type still counts as {}", async () => {
    const res = await send("/mig/v0.1/hello", "", { "x-tenant-id": "acme", "content-length": "0" });
    expect(res.status).toBe(200);
    expect(res.body.header.tenant_id).toBe("acme");
  });

  it("application/json with a charset, and application/*+json, are accepted", async () => {
    const body = JSON.stringify({ header: acme, payload: { a: 1 } });
    expect(
      (await send("/mig/v0.1/invoke/test.echo", body, { "content-type": "application/json; charset=UTF-8" })).status,
    ).toBe(200);
    expect((await send("/mig/v0.1/invoke/test.echo", body, { "content-type": "Application/JSON" })).status).toBe(200);
    expect((await send("/mig/v0.1/invoke/test.echo", body, { "content-type": "application/mig+json" })).status).toBe(
      200,
    );
  });

  it("oversized request headers get a 431 envelope", async () => {
    const { text } = await trickle(
      t.http.url,
      [`GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(32 * 1024)}\r\n\r\n`],
      1,
    );
    const answer = parseRaw(text);
    expect(answer.status).toBe(431);
    expectEnvelope("ErrorEnvelope", answer.body);
    expect(answer.body.error.code).toBe("MIG_INVALID_REQUEST");
  });
});

describe("streams per WebSocket", () => {
  it("one more than the cap gets a retryable MIG_BACKPRESSURE error frame, and the socket keeps working", async () => {
    const client = await StreamClient.open(t.http.url);
    try {
      const open = Array.from({ length: 4 }, () => client.start("test.stream.parked", {}));
      await client.until("4 parked streams", () => open.every((s) => client.of(s.streamId).length > 0));
      const refused = client.start("test.stream.parked", {});
      const [frame] = await client.ended(refused.streamId);
      expect(frame).toMatchObject({
        kind: "error",
        end_stream: true,
        error: { code: "MIG_BACKPRESSURE", retryable: true },
      });
      expectEnvelope("StreamFrame", frame);

      client.send({
        header: acme,
        stream_id: open[0]!.streamId,
        capability: "test.stream.parked",
        kind: "control",
        payload: { action: "cancel" },
      });
      await client.ended(open[0]!.streamId);
      const next = client.start("test.stream.parked", {});
      await client.until("the next stream's first frame", () => client.of(next.streamId).length > 0);
      expect(client.of(next.streamId)[0]).toMatchObject({ kind: "response", payload: { parked: true } });
    } finally {
      client.close();
    }
  });
});

describe("connections beyond the cap", () => {
  let capped: TestRuntime;
  beforeAll(async () => {
    capped = await startTestRuntime({ capabilities: [echo], config: { httpMaxConnections: 3 } });
  });
  afterAll(() => capped?.stop());

  async function hello(agent: Agent): Promise<RawAnswer> {
    const url = new URL(capped.http.url);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: "/mig/v0.1/hello",
          method: "POST",
          agent,
          headers: { "content-type": "application/json" },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode!,
              headers: res.headers,
              body: JSON.parse(Buffer.concat(chunks).toString()),
            }),
          );
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ header: acme }));
    });
  }

  it("are refused with a 503 envelope and Retry-After while the ones within keep working", async () => {
    const agents = Array.from({ length: 3 }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      for (const agent of agents) expect((await hello(agent)).status).toBe(200);
      const extra = new Agent({ keepAlive: false });
      const refused = await hello(extra);
      expectError(refused, 503, "MIG_BACKPRESSURE");
      expect(refused.headers["retry-after"]).toBeDefined();
      expect(refused.body.error.retryable).toBe(true);
      for (const agent of agents) expect((await hello(agent)).status).toBe(200);

      agents[0]!.destroy();
      await waitFor("a free connection", async () => (await hello(new Agent({ keepAlive: false }))).status === 200);
    } finally {
      for (const agent of agents) agent.destroy();
    }
  });
});
