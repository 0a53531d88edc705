// MCP servers attached as MIG providers: the real server-everything behind `mig worker --mcp` (stdio) and
// `--mcp-url` (Streamable HTTP) processes, called over HTTP, NATS and gRPC with the client library; and a test
// server that misbehaves on purpose, attached by an in-process worker.
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { splitCommandLine, upstreamSpecs } from "../bindings/mcp/upstream-config.ts";
import { migCodeOfJsonRpc } from "../bindings/mcp/upstream-errors.ts";
import { McpUpstreams } from "../bindings/mcp/upstream-set.ts";
import { capabilityPartOf } from "../bindings/mcp/upstream-tools.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { connect, type MigClient, MigError } from "../client/index.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import type { JsonObject, StreamFrame } from "../schemas/types.ts";
import { WorkerHost } from "../worker/host.ts";
import { type MigProcess, ROOT, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const QUIRKY = join(ROOT, "test/fixtures/mcp-upstream-quirky-server.mjs");
const TRANSPORTS = ["http", "nats", "grpc"] as const;
type TransportName = (typeof TRANSPORTS)[number];

let gateway: TestRuntime;
let nats: NatsBinding;
let grpc: GrpcBinding;
let httpServer: ChildProcess;
let httpServerPort: number;
const workers: MigProcess[] = [];
let stdioWorker: MigProcess;
let httpWorker: MigProcess;
const clients = {} as Record<TransportName, MigClient>;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** server-everything in its Streamable HTTP mode (`index.js streamableHttp`, port from PORT), once it listens. */
async function startEverythingOverHttp(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [EVERYTHING, "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on("data", (chunk) => {
      stderr += chunk;
      if (stderr.includes("listening on port")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`server-everything exited (${code}): ${stderr}`)));
  });
  return child;
}

function worker(args: string[]): MigProcess {
  const child = startMig(["worker", ...args], {
    MIG_NATS_URL: gateway.runtime.natsUrl,
    MIG_PROVIDER_HEARTBEAT_MS: "500",
  });
  workers.push(child);
  return child;
}

const connectedLines = (process: MigProcess) => process.logs.filter((l) => l.msg === "MCP upstream connected");

async function failureOf(call: Promise<unknown>): Promise<MigError> {
  const outcome = await call.then(
    (value) => value,
    (err: unknown) => err,
  );
  if (!(outcome instanceof MigError)) throw new Error(`expected a MigError, got ${JSON.stringify(outcome)}`);
  return outcome;
}

/** A stream's data frames; its terminal frame's payload is `stream.result`. */
async function framesOf(stream: AsyncIterable<StreamFrame>): Promise<JsonObject[]> {
  const frames: JsonObject[] = [];
  for await (const frame of stream) frames.push(frame.payload ?? {});
  return frames;
}

beforeAll(async () => {
  gateway = await startTestRuntime();
  nats = await startNatsBinding(gateway.runtime, gateway.runtime.authenticator);
  grpc = await startGrpcBinding(gateway.runtime, gateway.runtime.authenticator, "127.0.0.1:0");
  httpServerPort = await freePort();
  httpServer = await startEverythingOverHttp(httpServerPort);
  stdioWorker = worker(["--mcp", `"${process.execPath}" "${EVERYTHING}" stdio`, "--mcp-namespace", "everything"]);
  httpWorker = worker(["--mcp-url", `http://127.0.0.1:${httpServerPort}/mcp`, "--mcp-namespace", "web"]);
  clients.http = await connect(gateway.http.url, { tenant: "acme" });
  clients.nats = await connect(gateway.runtime.natsUrl, { tenant: "acme" });
  clients.grpc = await connect(`grpc://127.0.0.1:${grpc.port}`, { tenant: "acme" });
  await Promise.all([
    stdioWorker.waitForLog("worker serving", 30_000),
    httpWorker.waitForLog("worker serving", 30_000),
  ]);
  await waitFor(
    "the gateway to list both servers' tools",
    () =>
      ["everything.echo", "everything.simulate-research-query", "web.echo", "web.simulate-research-query"].every((id) =>
        gateway.runtime.capabilities.get(id),
      ),
    20_000,
  );
}, 90_000);

afterAll(async () => {
  await Promise.all(Object.values(clients).map((c) => c.close()));
  await Promise.all(workers.map((w) => w.stop("SIGTERM")));
  httpServer?.kill("SIGKILL");
  await nats?.close();
  await grpc?.close();
  await gateway?.stop();
}, 60_000);

describe("an MCP server behind `mig worker`", () => {
  it("lists each tool as <namespace>.<tool>, unary and server_stream, with its input schema registered", async () => {
    const { capabilities } = await clients.http.discover({ includeSchemaRefs: true });
    const sum = capabilities.find((c) => c.id === "everything.get-sum")!;
    expect(sum.modes).toEqual(["unary", "server_stream"]);
    expect(sum.input_schema_uri).toMatch(/^mcp:\/\/everything\/get-sum\/input\/[0-9a-f]{12}$/);
    expect(gateway.runtime.schemas.get(sum.input_schema_uri!)).toEqual({
      type: "object",
      properties: {
        a: { type: "number", description: "First number" },
        b: { type: "number", description: "Second number" },
      },
      required: ["a", "b"],
    });
    const weather = capabilities.find((c) => c.id === "web.get-structured-content")!;
    expect(weather.output_schema_uri).toMatch(/^mcp:\/\/web\/get-structured-content\/output\/[0-9a-f]{12}$/);
    // Both servers are the same program: the same schemas, under the same content-addressed part of the URI.
    const webSum = capabilities.find((c) => c.id === "web.get-sum")!;
    expect(webSum.input_schema_uri!.split("/").pop()).toBe(sum.input_schema_uri!.split("/").pop());
  });

  it("answers echo, get-sum and get-structured-content over HTTP, NATS and gRPC, from stdio and HTTP servers", async () => {
    for (const transport of TRANSPORTS) {
      for (const namespace of ["everything", "web"]) {
        const client = clients[transport];
        const echo = await client.invoke(`${namespace}.echo`, { message: `hi over ${transport}` });
        expect(echo.payload).toEqual({
          content: [{ type: "text", text: `Echo: hi over ${transport}` }],
          text: `Echo: hi over ${transport}`,
        });
        const sum = await client.invoke(`${namespace}.get-sum`, { a: 2, b: 40 });
        expect(sum.payload.text).toBe("The sum of 2 and 40 is 42.");
        const weather = await client.invoke(`${namespace}.get-structured-content`, { location: "Chicago" });
        expect(weather.payload).toEqual({ temperature: 36, conditions: "Light rain / drizzle", humidity: 82 });
      }
    }
  }, 60_000);

  it("streams trigger-long-running-operation's progress as frames, in order, before its result", async () => {
    const runs = TRANSPORTS.flatMap((transport) =>
      ["everything", "web"].map(async (namespace) => {
        const stream = clients[transport].stream(`${namespace}.trigger-long-running-operation`, {
          duration: 0.4,
          steps: 4,
        });
        const frames = await framesOf(stream);
        return { frames, result: await stream.result };
      }),
    );
    for (const { frames, result } of await Promise.all(runs)) {
      expect(frames).toEqual([1, 2, 3, 4].map((progress) => ({ progress, total: 4 })));
      expect(result.text).toBe("Long running operation completed. Duration: 0.4 seconds, Steps: 4.");
    }
  }, 60_000);

  it("runs a tool that requires tasks (simulate-research-query) as a task, unary and streamed", async () => {
    const unary = TRANSPORTS.map((transport) =>
      clients[transport].invoke(
        "web.simulate-research-query",
        { topic: `tasks over ${transport}` },
        { deadlineMs: 60_000 },
      ),
    );
    const stream = clients.grpc.stream(
      "everything.simulate-research-query",
      { topic: "streamed" },
      { deadlineMs: 60_000 },
    );
    const frames = await framesOf(stream);
    for (const [i, answer] of (await Promise.all(unary)).entries()) {
      expect(answer.payload.text).toContain(`# Research Report: tasks over ${TRANSPORTS[i]}`);
    }
    const statuses = frames.map((f) => f.task as JsonObject);
    expect(statuses.length).toBeGreaterThan(0);
    expect(new Set(statuses.map((s) => s.task_id)).size).toBe(1);
    expect(statuses.map((s) => s.status)).toContain("working");
    expect((await stream.result).text).toContain("# Research Report: streamed");
  }, 60_000);

  it("offers the server's prompts and resources as capabilities", async () => {
    const prompt = await clients.nats.invoke("everything.prompts.args-prompt", { city: "Lisbon" });
    expect(prompt.payload.messages).toEqual([
      { role: "user", content: { type: "text", text: "What's weather in Lisbon?" } },
    ]);
    const noCity = await failureOf(clients.nats.invoke("everything.prompts.args-prompt", {}, { retry: false }));
    expect(noCity.code).toBe("MIG_INVALID_REQUEST");
    const listed = await clients.grpc.invoke("web.resources.list", {});
    const resources = listed.payload.resources as { uri: string; name: string }[];
    expect(resources.map((r) => r.name)).toContain("architecture.md");
    expect(listed.payload.resource_templates).toContainEqual(
      expect.objectContaining({ uriTemplate: "demo://resource/dynamic/text/{resourceId}" }),
    );
    const { uri } = resources.find((r) => r.name === "architecture.md")!;
    const read = await clients.http.invoke("web.resources.read", { uri });
    expect(read.payload.contents).toMatchObject([{ uri, mimeType: "text/markdown" }]);
    const missing = await failureOf(
      clients.http.invoke("web.resources.read", { uri: "demo://nope" }, { retry: false }),
    );
    expect(missing.code).toBe("MIG_INVALID_REQUEST"); // the server answers -32602 without naming the URI in data
    expect(missing.details?.jsonrpc_error).toMatchObject({ code: -32602 });
  });

  it("refuses arguments that fail the tool's schema with MIG_INVALID_REQUEST before the server sees them", async () => {
    for (const transport of TRANSPORTS) {
      const err = await failureOf(
        clients[transport].invoke("everything.get-sum", { a: "two", b: 2 }, { retry: false }),
      );
      expect(err.code).toBe("MIG_INVALID_REQUEST");
      // The gateway's schema check, not the server's answer (which would name the upstream).
      expect(String(err.details?.schema_uri)).toMatch(/^mcp:\/\/everything\/get-sum\/input\//);
      expect(err.details?.upstream).toBeUndefined();
    }
  }, 30_000);

  it("answers a CANCEL of a long-running tool at once, on every transport, while the server keeps running", async () => {
    for (const transport of TRANSPORTS) {
      const client = clients[transport];
      const messageId = randomUUID();
      // Sixty seconds of work: an answer within the test's time is the cancel's.
      const call = failureOf(
        client.invoke(
          "everything.trigger-long-running-operation",
          { duration: 60, steps: 60 },
          { messageId, deadlineMs: 90_000, retry: false },
        ),
      );
      await waitFor("the cancel to find the call", async () => (await client.cancel(messageId)).status === "cancelled");
      const err = await call;
      expect(err.code).toBe("MIG_TIMEOUT");
      expect(err.details?.cancelled).toBe(true);
    }
    const stream = clients.nats.stream("everything.trigger-long-running-operation", { duration: 60, steps: 60 });
    for await (const frame of stream) {
      expect(frame.payload).toEqual({ progress: 1, total: 60 });
      break; // cancels the stream
    }
    const err = await failureOf(stream.result);
    expect(err.details?.cancelled).toBe(true);
    // The server is still there for the next call.
    expect((await clients.http.invoke("everything.echo", { message: "still here" })).payload.text).toBe(
      "Echo: still here",
    );
  }, 30_000);

  it("answers MIG_UNAVAILABLE at once when the server dies mid-call, and the restarted server answers the next", async () => {
    const before = connectedLines(stdioWorker).length;
    const serverPid = Number(connectedLines(stdioWorker).at(-1)!.server_pid);
    const stream = clients.grpc.stream("everything.trigger-long-running-operation", { duration: 60, steps: 60 });
    const frames = stream[Symbol.asyncIterator]();
    expect((await frames.next()).value?.payload).toEqual({ progress: 1, total: 60 });
    process.kill(serverPid, "SIGKILL");
    const err = await failureOf(frames.next());
    expect(err.code).toBe("MIG_UNAVAILABLE");
    expect(err.retryable).toBe(true);
    await waitFor("the worker to start the server again", () => connectedLines(stdioWorker).length > before, 20_000);
    expect(Number(connectedLines(stdioWorker).at(-1)!.server_pid)).not.toBe(serverPid);
    const answer = await clients.nats.invoke("everything.echo", { message: "after the restart" }, { retry: false });
    expect(answer.payload.text).toBe("Echo: after the restart");
  }, 30_000);

  it("answers MIG_UNAVAILABLE at once when an HTTP server dies mid-call, and connects again once it is back", async () => {
    const before = connectedLines(httpWorker).length;
    const stream = clients.http.stream("web.trigger-long-running-operation", { duration: 60, steps: 60 });
    const frames = stream[Symbol.asyncIterator]();
    expect((await frames.next()).value?.payload).toEqual({ progress: 1, total: 60 });
    httpServer.kill("SIGKILL");
    const err = await failureOf(frames.next());
    expect(err.code).toBe("MIG_UNAVAILABLE");
    const meanwhile = await failureOf(clients.grpc.invoke("web.echo", { message: "anyone?" }, { retry: false }));
    expect(meanwhile.code).toBe("MIG_UNAVAILABLE");
    expect(meanwhile.details?.upstream).toBe("web");
    httpServer = await startEverythingOverHttp(httpServerPort);
    await waitFor("the worker to connect again", () => connectedLines(httpWorker).length > before, 20_000);
    const answer = await clients.grpc.invoke("web.echo", { message: "welcome back" }, { retry: false });
    expect(answer.payload.text).toBe("Echo: welcome back");
  }, 40_000);

  it("shares the calls of one server's tools among the workers attaching it (the config file's, with its env)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mig-mcp-config-"));
    const file = join(dir, "upstreams.yaml");
    writeFileSync(
      file,
      [
        "upstreams:",
        "  - namespace: everything",
        `    command: ${JSON.stringify(process.execPath)}`,
        `    args: [${JSON.stringify(EVERYTHING)}, stdio]`,
        "    env: { WORKER_NAME: second }",
        "",
      ].join("\n"),
    );
    const second = worker(["--mcp-config", file]);
    await second.waitForLog("worker serving", 30_000);
    await waitFor("the second worker in the registry", () => gateway.runtime.fleet!.providerIds().length >= 3, 10_000);
    const servedBy = new Map<string, number>();
    // Through the gateway, which hands each call to one member of the workers' queue group.
    for (let i = 0; i < 40; i++) {
      const answer = await clients.http.invoke("everything.get-env", {});
      const env = JSON.parse(String(answer.payload.text)) as Record<string, string>;
      const name = env.WORKER_NAME ?? "first";
      servedBy.set(name, (servedBy.get(name) ?? 0) + 1);
    }
    expect([...servedBy.keys()].sort()).toEqual(["first", "second"]);
    expect([...servedBy.values()].reduce((a, b) => a + b, 0)).toBe(40);
  }, 60_000);
});

describe("a misbehaving MCP server behind an in-process worker", () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  let upstreams: McpUpstreams;
  let runtime: MigRuntime;
  let host: WorkerHost;
  const logged = (msg: string) => lines.filter((l) => l.msg === msg);
  const LANE_OPEN = "direct lane answering NATS invokes";
  const ids = () => gateway.runtime.capabilities.remoteIds();

  beforeAll(async () => {
    upstreams = await McpUpstreams.attach(upstreamSpecs({ mcp: `"${process.execPath}" "${QUIRKY}"` }), logger);
    const config = loadConfig({ natsUrl: gateway.runtime.natsUrl, dataDir: gateway.dataDir, logLevel: "silent" }, {});
    runtime = await MigRuntime.start(config, { logger, fleet: true });
    host = await WorkerHost.start(runtime, upstreams.definitions(), { heartbeatMs: 500 });
    upstreams.onChange(() => void host.update(upstreams.definitions()));
    await waitFor("the gateway to list the test server's tools", () => ids().includes("quirky.exact_name"));
    await waitFor("the worker's direct lane", () => logged(LANE_OPEN).length > 0);
  }, 30_000);

  afterAll(async () => {
    await host?.stop();
    await upstreams?.close();
    await runtime?.stop();
  });

  it("names capabilities by the server's name and maps tool names no capability id can hold, logging each", () => {
    expect(
      ids()
        .filter((id) => id.startsWith("quirky."))
        .sort(),
    ).toEqual(
      [
        "a_b",
        "exact_name",
        "fails_rpc",
        "fails_tool",
        "files_read_all",
        "grow",
        "hangs",
        "not_mcp",
        "overloaded",
        "shrink",
        "tuple",
      ].map((tool) => `quirky.${tool}`),
    );
    expect(logged("MCP tool renamed: characters a capability id cannot hold became '_'")).toMatchObject([
      { tool: "files/read all", capability: "quirky.files_read_all" },
    ]);
    expect(logged("MCP tool skipped: its name gives no capability id of its own")).toMatchObject([{ tool: "a b" }]);
    expect(logged("MCP tool input schema does not compile; the capability takes any object")).toMatchObject([
      { capability: "quirky.tuple" },
    ]);
  });

  it("calls a renamed tool by its MCP name, and one whose schema did not compile", async () => {
    expect((await clients.http.invoke("quirky.files_read_all", {})).payload.text).toBe("called files/read all");
    expect((await clients.http.invoke("quirky.tuple", { pair: ["x"] })).payload.text).toBe("called tuple");
  });

  it("follows notifications/tools/list_changed: a tool added appears (on the direct lane too), a tool removed goes", async () => {
    const lanes = logged(LANE_OPEN).length;
    await clients.http.invoke("quirky.grow", {});
    await waitFor("quirky.grown in the gateway's registry", () => ids().includes("quirky.grown"));
    expect((await clients.http.invoke("quirky.grown", {})).payload.text).toBe("called grown");
    // The lane is opened again on the new set of capabilities, with a new switch instant.
    await waitFor("the direct lane on the new set", () => logged(LANE_OPEN).length > lanes);
    expect(logged(LANE_OPEN).at(-1)!.capabilities).toContain("quirky.grown");
    expect((await clients.nats.invoke("quirky.grown", {})).payload.text).toBe("called grown");
    expect((await clients.nats.invoke("quirky.exact_name", {})).payload.text).toBe("called exact_name");
    await clients.http.invoke("quirky.shrink", {});
    await waitFor("quirky.grown gone from the gateway's registry", () => !ids().includes("quirky.grown"));
    const err = await failureOf(clients.http.invoke("quirky.grown", {}, { retry: false }));
    expect(err.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
  }, 30_000);

  it("turns JSON-RPC errors, error results and answers that are not MCP into MIG errors, keeping the original", async () => {
    const rpc = await failureOf(clients.grpc.invoke("quirky.fails_rpc", {}, { retry: false }));
    expect(rpc.code).toBe("MIG_INVALID_REQUEST");
    expect(rpc.details?.jsonrpc_error).toEqual({
      code: -32602,
      message: "argument x is out of range",
      data: { field: "x" },
    });
    const tool = await failureOf(clients.grpc.invoke("quirky.fails_tool", {}, { retry: false }));
    expect(tool.code).toBe("MIG_INTERNAL");
    expect(tool.retryable).toBe(false);
    expect(tool.message).toContain("disk full");
    expect(tool.details?.tool_error).toEqual({ content: [{ type: "text", text: "disk full" }] });
    const busy = await failureOf(clients.grpc.invoke("quirky.overloaded", {}, { retry: false }));
    expect(busy.code).toBe("MIG_UNAVAILABLE");
    expect(busy.retryable).toBe(true);
    const garbage = await failureOf(clients.grpc.invoke("quirky.not_mcp", {}, { retry: false }));
    expect(garbage.code).toBe("MIG_INTERNAL");
    expect(garbage.message).toContain("not a list");
  });

  it("answers a call the server never answers with MIG_TIMEOUT at the MIG deadline", async () => {
    const err = await failureOf(clients.http.invoke("quirky.hangs", {}, { deadlineMs: 300, retry: false }));
    expect(err.code).toBe("MIG_TIMEOUT");
    expect(err.details?.cancelled).toBeUndefined();
  });
});

describe("the upstream rules", () => {
  it("splits --mcp like a shell, without expanding anything", () => {
    expect(splitCommandLine(`node "my server.js" --name 'a b' x\\ y --flag="$HOME"`)).toEqual([
      "node",
      "my server.js",
      "--name",
      "a b",
      "x y",
      "--flag=$HOME",
    ]);
    expect(() => splitCommandLine(`node "open`)).toThrow(/not closed/);
  });

  it("maps tool names to capability id parts", () => {
    expect(capabilityPartOf("get-sum")).toBe("get-sum");
    expect(capabilityPartOf("files.read")).toBe("files.read");
    expect(capabilityPartOf("files/read all")).toBe("files_read_all");
    expect(capabilityPartOf("..a..b.")).toBe("a.b");
    expect(capabilityPartOf("...")).toBeUndefined();
  });

  it("maps JSON-RPC codes by the standard's table read backwards", () => {
    expect(migCodeOfJsonRpc(-32600)).toBe("MIG_INVALID_REQUEST");
    expect(migCodeOfJsonRpc(-32601)).toBe("MIG_NOT_FOUND");
    expect(migCodeOfJsonRpc(-32602)).toBe("MIG_INVALID_REQUEST");
    expect(migCodeOfJsonRpc(-32603)).toBe("MIG_INTERNAL");
    expect(migCodeOfJsonRpc(-32003)).toBe("MIG_FORBIDDEN");
    expect(migCodeOfJsonRpc(-32009)).toBe("MIG_RATE_LIMITED");
    expect(migCodeOfJsonRpc(-32050)).toBe("MIG_UNAVAILABLE");
    expect(migCodeOfJsonRpc(42)).toBe("MIG_INTERNAL");
  });
});
