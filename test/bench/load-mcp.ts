// MCP load generator (run as its own process): N callers make `tools/call` requests of one tool in a closed loop and
// print the figures as JSON lines, over one of three wires:
//  - `http`: raw JSON-RPC POSTs over keep-alive connections (one socket per caller) with the headers and body the SDK
//    client (2.4) sends on the revision given, plus X-Tenant-ID (its default, 2025-11-25: `initialize` once, then
//    each call a POST answered as one SSE event; 2026-07-28: `server/discover` once, then each call carrying the
//    `_meta` envelope, answered as JSON), each with a fresh JSON-RPC id; every answer is parsed and must be a result
//    that is no tool error;
//  - `sdk-http`: the official SDK client (`Client.callTool`) over Streamable HTTP, the same revisions;
//  - `sdk-stdio`: the SDK client over stdio, spawning the server itself (`--target` is its argv as a JSON array); the
//    server's pid is printed as {"mcp_server_pid":…} before the run, so that its CPU can be read.
//
//   node --import tsx test/bench/load-mcp.ts --wire http --target http://127.0.0.1:8080/mcp \
//     --tool observatory.models.infer --body '{"input":"hello"}' --revision 2025-11-25 --concurrency 16 --serve
import http from "node:http";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { checkProbeReply, describe, failedResult, parseLoaderArgs, runLoader, type Wire } from "./closed-loop.ts";
import type { LoadResult } from "./types.ts";

const REVISIONS = ["2025-11-25", "2026-07-28"] as const;
type Revision = (typeof REVISIONS)[number];
const WIRES = ["http", "sdk-http", "sdk-stdio"] as const;
/** The tenant a MIG gateway in auth mode none needs named; a bare server ignores the header. */
const TENANT_HEADER = { "x-tenant-id": "bench" };
const CLIENT_INFO = { name: "mig-bench", version: "1.0.0" };
const CALL_TIMEOUT_MS = 10_000;

const args = parseLoaderArgs(["wire", "target", "tool", "revision"]);
const wire = String(args.values.wire);
const target = String(args.values.target);
const toolName = String(args.values.tool);
const revision = String(args.values.revision) as Revision;
if (!WIRES.includes(wire as (typeof WIRES)[number])) throw new Error(`--wire: one of ${WIRES.join(", ")}`);
if (!REVISIONS.includes(revision)) throw new Error(`--revision: one of ${REVISIONS.join(", ")}`);
const toolArguments = JSON.parse(args.body) as Record<string, unknown>;

/** A JSON-RPC answer read from a JSON body or from the last `data:` line of an SSE body. */
function jsonRpcAnswer(
  contentType: string | undefined,
  text: string,
): { result?: { isError?: boolean }; error?: unknown } {
  if (contentType?.startsWith("text/event-stream")) {
    const data = text
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .at(-1);
    if (data === undefined) throw new Error(`an SSE answer without a data line: ${text.slice(0, 200)}`);
    return JSON.parse(data.slice(6));
  }
  return JSON.parse(text);
}

/** Why a tools/call answer does not count, or undefined when it is a result that is no tool error. */
function refusalOf(answer: { result?: { isError?: boolean }; error?: unknown }): string | undefined {
  if (answer.error !== undefined) return `JSON-RPC error ${JSON.stringify(answer.error).slice(0, 300)}`;
  if (answer.result === undefined) return "an answer without a result";
  if (answer.result.isError) return `a tool error: ${JSON.stringify(answer.result).slice(0, 300)}`;
  return undefined;
}

/** Raw JSON-RPC over kept-alive HTTP connections, as the SDK client sends it. */
function rawHttpWire(): Wire {
  const url = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });
  const modern = revision === "2026-07-28";
  const envelope = {
    "io.modelcontextprotocol/protocolVersion": revision,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
  };
  const baseHeaders = {
    accept: "application/json, text/event-stream",
    "content-type": "application/json",
    ...TENANT_HEADER,
  };
  const callHeaders: Record<string, string> = modern
    ? { ...baseHeaders, "mcp-method": "tools/call", "mcp-name": toolName, "mcp-protocol-version": revision }
    : { ...baseHeaders, "mcp-protocol-version": revision };
  // The body around the id is built once: only the id changes between calls.
  const params = modern
    ? { name: toolName, arguments: toolArguments, _meta: envelope }
    : { name: toolName, arguments: toolArguments };
  const before = `{"method":"tools/call","params":${JSON.stringify(params)},"jsonrpc":"2.0","id":`;
  let nextId = 1;

  function post(
    body: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; type?: string; text: string; headers: http.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent,
          method: "POST",
          hostname: url.hostname,
          port: url.port,
          path: url.pathname,
          headers: { ...headers, "content-length": Buffer.byteLength(body) },
          timeout: CALL_TIMEOUT_MS,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => (text += chunk));
          res.on("error", reject);
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], text, headers: res.headers }),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${CALL_TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  async function call(): Promise<void> {
    const { status, type, text, headers } = await post(`${before}${nextId++}}`, callHeaders);
    if (status !== 200) throw new Error(`HTTP ${status} ${JSON.stringify(headers)}: ${text.slice(0, 200)}`);
    const refusal = refusalOf(jsonRpcAnswer(type, text));
    if (refusal) throw new Error(refusal);
  }

  /** The client's opening, once: `initialize` and its notification (2025-11-25), or `server/discover` (2026-07-28). */
  async function open(): Promise<string | undefined> {
    const opening = modern
      ? {
          body: { jsonrpc: "2.0", id: 0, method: "server/discover", params: { _meta: envelope } },
          headers: { ...baseHeaders, "mcp-method": "server/discover", "mcp-protocol-version": revision },
        }
      : {
          body: {
            method: "initialize",
            params: { protocolVersion: revision, capabilities: {}, clientInfo: CLIENT_INFO },
            jsonrpc: "2.0",
            id: 0,
          },
          headers: baseHeaders,
        };
    const answer = await post(JSON.stringify(opening.body), opening.headers);
    if (answer.status !== 200)
      return `probe: ${opening.body.method}: HTTP ${answer.status}: ${answer.text.slice(0, 300)}`;
    const opened = jsonRpcAnswer(answer.type, answer.text);
    if (opened.error !== undefined) return `probe: ${opening.body.method}: ${JSON.stringify(opened.error)}`;
    if (!modern) {
      const note = await post('{"jsonrpc":"2.0","method":"notifications/initialized"}', callHeaders);
      if (note.status !== 202) return `probe: notifications/initialized: HTTP ${note.status}`;
    }
    return undefined;
  }

  return {
    tool: "http",
    async probe() {
      const problem = await open();
      if (problem) return problem;
      const { status, type, text } = await post(`${before}${nextId++}}`, callHeaders);
      if (status !== 200) return `probe: HTTP ${status}: ${text.slice(0, 300)}`;
      const answer = jsonRpcAnswer(type, text);
      const refusal = refusalOf(answer);
      return refusal ? `probe: ${refusal}` : checkProbeReply(JSON.stringify(answer.result));
    },
    call,
    async close() {
      agent.destroy();
    },
  };
}

/** The official SDK client, over Streamable HTTP or spawning the server over stdio. */
async function sdkWire(): Promise<Wire> {
  const stdio = wire === "sdk-stdio";
  const client = new Client(CLIENT_INFO, {
    versionNegotiation: { mode: revision === "2026-07-28" ? { pin: revision } : "legacy" },
  });
  if (stdio) {
    const [command, ...rest] = JSON.parse(target) as string[];
    if (!command) throw new Error("--target: the server's argv as a JSON array");
    const transport = new StdioClientTransport({ command, args: rest, stderr: "ignore" });
    await client.connect(transport);
    process.stdout.write(`${JSON.stringify({ mcp_server_pid: transport.pid })}\n`);
  } else {
    await client.connect(
      new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers: TENANT_HEADER } }),
    );
  }
  const call = () => client.callTool({ name: toolName, arguments: toolArguments }, { timeout: CALL_TIMEOUT_MS });
  return {
    // The closed loop's result line names a wire; stdio is none of the loaders' three.
    tool: (stdio ? "mcp-stdio" : "http") as LoadResult["tool"],
    async probe() {
      const result = await call();
      if (result.isError) return `probe: a tool error: ${JSON.stringify(result).slice(0, 300)}`;
      return checkProbeReply(JSON.stringify(result));
    },
    async call() {
      const result = await call();
      if (result.isError) throw new Error(`a tool error: ${JSON.stringify(result.content).slice(0, 200)}`);
    },
    async close() {
      await client.close();
    },
  };
}

let chosen: Wire;
try {
  chosen = wire === "http" ? rawHttpWire() : await sdkWire();
} catch (err) {
  process.stdout.write(`${JSON.stringify(failedResult("http", args, `connect: ${describe(err)}`))}\n`);
  process.exit(2);
}
await runLoader(args, chosen);
