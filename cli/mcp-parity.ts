// `mig mcp parity <server>`: calls every tool of an MCP server twice with the same arguments, once directly and once
// through a throwaway MIG fleet (gateway /mcp → worker → the same server), and prints whether the answers agree.
import type { Tool } from "@modelcontextprotocol/client";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { pino } from "pino";
import { namespaceOf } from "../bindings/mcp/upstream.ts";
import { ANY_RESULT } from "../bindings/mcp/upstream-call.ts";
import { splitCommandLine, type UpstreamSpec, upstreamSpecs } from "../bindings/mcp/upstream-config.ts";
import { capabilityPartOf } from "../bindings/mcp/upstream-tools.ts";
import { type ArgsFile, argumentsFor, readArgsFile } from "./mcp-parity-arguments.ts";
import { type CallOutcome, judge } from "./mcp-parity-compare.ts";
import { startParityFleet } from "./mcp-parity-fleet.ts";
import { bold, printJson, printTable } from "./output.ts";

export interface ParityOptions {
  /** A command line (stdio) or an http(s):// URL (Streamable HTTP). */
  server: string;
  args?: string | undefined;
  namespace?: string | undefined;
  /** Bound on each call, in ms. */
  timeout?: number | undefined;
  json?: boolean | undefined;
  verbose?: boolean | undefined;
}

export type ParityStatus = "equal" | "different" | "failed" | "skipped";

export interface ToolParity {
  tool: string;
  /** The tool's name through MIG (its capability id). */
  through: string | undefined;
  status: ParityStatus;
  detail: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const TENANT = "parity";
const CLIENT_INFO = { name: "mig-mcp-parity", version: "0.1.0" };

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** Runs the comparison and prints it; resolves to the exit status (0: every tool equal or skipped, 1: otherwise). */
export async function runParity(options: ParityOptions): Promise<number> {
  const timeoutMs = options.timeout ?? DEFAULT_TIMEOUT_MS;
  const argsFile: ArgsFile = options.args ? readArgsFile(options.args) : {};
  const note = (text: string) => process.stderr.write(`mig mcp parity: ${text}\n`);
  const logger = pino({ level: options.verbose ? "info" : "warn" }, pino.destination(2));

  const direct = await connectDirect(options.server);
  const fleetClient = new Client(CLIENT_INFO);
  let fleet: Awaited<ReturnType<typeof startParityFleet>> | undefined;
  try {
    const serverName = direct.client.getServerVersion()?.name;
    const namespace = options.namespace ?? namespaceOf(serverName);
    fleet = await startParityFleet(workerSpec(options.server, namespace), logger);
    await fleetClient.connect(
      new StreamableHTTPClientTransport(new URL(fleet.mcpUrl), { requestInit: { headers: { "x-tenant-id": TENANT } } }),
    );
    const { tools } = await direct.client.listTools();
    for (const name of Object.keys(argsFile)) {
      if (!tools.some((tool) => tool.name === name))
        note(`the args file names ${name}, which the server does not list`);
    }
    const offered = new Set(fleet.capabilities);
    const results: ToolParity[] = [];
    for (const tool of [...tools].sort((a, b) => a.name.localeCompare(b.name))) {
      const part = capabilityPartOf(tool.name);
      const through = part === undefined ? undefined : `${namespace}.${part}`;
      const entry = argsFile[tool.name];
      const chosen = argumentsFor(tool, entry);
      if ("skip" in chosen) {
        results.push({ tool: tool.name, through, status: "skipped", detail: chosen.skip });
        continue;
      }
      if (through === undefined || !offered.has(through)) {
        const detail = "not offered through MIG: its name gives no capability id of its own (see the log)";
        results.push({ tool: tool.name, through, status: "failed", detail });
        continue;
      }
      const [own, viaMig] = await Promise.all([
        callDirectly(direct.client, tool, chosen.arguments, timeoutMs),
        callThroughMig(fleetClient, through, chosen.arguments, timeoutMs),
      ]);
      const verdict = judge(own, viaMig, {
        compare: entry?.compare !== false,
        outputSchema: tool.outputSchema,
        ignore: entry?.ignore,
      });
      results.push({ tool: tool.name, through, ...verdict });
    }
    print(results, { server: options.server, namespace, json: options.json === true });
    return results.some((r) => r.status === "different" || r.status === "failed") ? 1 : 0;
  } catch (err) {
    const stderr = direct.stderr().trim();
    throw new Error(`${(err as Error).message}${stderr ? ` (the server's last words: ${stderr.slice(-300)})` : ""}`);
  } finally {
    await fleetClient.close().catch(() => undefined);
    await direct.client.close().catch(() => undefined);
    await fleet?.close();
  }
}

function isUrl(server: string): boolean {
  return /^https?:\/\//i.test(server.trim());
}

/** The same server for the worker: the command line (started again, a process of its own) or the URL. */
function workerSpec(server: string, namespace: string): UpstreamSpec {
  const [spec] = isUrl(server)
    ? upstreamSpecs({ mcpUrl: server.trim(), mcpNamespace: namespace })
    : upstreamSpecs({ mcp: server, mcpNamespace: namespace });
  return spec!;
}

/** A client of the server's own, as MCP clients use it: the small default environment, MCP 2025-11-25's handshake. */
async function connectDirect(server: string): Promise<{ client: Client; stderr: () => string }> {
  let stderr = "";
  let transport: StdioClientTransport | StreamableHTTPClientTransport;
  if (isUrl(server)) {
    transport = new StreamableHTTPClientTransport(new URL(server.trim()));
  } else {
    const [command, ...args] = splitCommandLine(server, "the server's command line");
    if (!command) throw new Error('give the command that starts the MCP server, e.g. "node server.js"');
    const stdio = new StdioClientTransport({ command, args, env: getDefaultEnvironment(), stderr: "pipe" });
    stdio.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2_000);
    });
    transport = stdio;
  }
  // The worker opens with `initialize` (docs/mcp.md): the direct client does too, so both meet the same server.
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode: "legacy" } });
  try {
    await client.connect(transport);
  } catch (err) {
    throw new Error(`cannot reach the MCP server: ${(err as Error).message}${stderr ? ` (${stderr.trim()})` : ""}`);
  }
  return { client, stderr: () => stderr };
}

/** `tools/call` on the server itself; a tool that requires tasks runs as one (created, polled, its result read). */
async function callDirectly(
  client: Client,
  tool: Tool,
  args: Record<string, unknown>,
  timeoutMs: number,
): Promise<CallOutcome> {
  const request = (method: string, params: Record<string, unknown>) =>
    client.request({ method, params }, ANY_RESULT, { timeout: timeoutMs });
  try {
    if (tool.execution?.taskSupport !== "required")
      return outcomeOf(await request("tools/call", { name: tool.name, arguments: args }));
    const created = await request("tools/call", { name: tool.name, arguments: args, task: { ttl: timeoutMs } });
    let task = isObject(created) && isObject(created.task) ? created.task : undefined;
    const until = Date.now() + timeoutMs;
    while (task && !["completed", "failed", "cancelled"].includes(String(task.status))) {
      if (Date.now() > until) return { error: `task ${String(task.taskId)} still ${String(task.status)}` };
      const pollMs = typeof task.pollInterval === "number" ? task.pollInterval : 1_000;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, Math.max(100, pollMs))));
      const polled = await request("tasks/get", { taskId: task.taskId });
      task = isObject(polled) ? polled : undefined;
    }
    if (!task) return { error: "the server answered a task request without a task" };
    if (task.status === "cancelled") return { error: `the server cancelled task ${String(task.taskId)}` };
    return outcomeOf(await request("tasks/result", { taskId: task.taskId }));
  } catch (err) {
    return { error: messageOf(err) };
  }
}

/** `tools/call` of the tool's capability at the fleet's gateway, with the call's bound as its MIG deadline. */
async function callThroughMig(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  timeoutMs: number,
): Promise<CallOutcome> {
  try {
    const params = { name, arguments: args, _meta: { deadline_ms: timeoutMs } };
    return outcomeOf(
      await client.request({ method: "tools/call", params }, ANY_RESULT, { timeout: timeoutMs + 5_000 }),
    );
  } catch (err) {
    return { error: messageOf(err) };
  }
}

function outcomeOf(result: unknown): CallOutcome {
  return isObject(result) ? { result } : { error: `answered ${JSON.stringify(result)}, not a tool result` };
}

function messageOf(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function print(results: ToolParity[], run: { server: string; namespace: string; json: boolean }): void {
  const count = (status: ParityStatus) => results.filter((r) => r.status === status).length;
  const tally = {
    equal: count("equal"),
    different: count("different"),
    failed: count("failed"),
    skipped: count("skipped"),
  };
  if (run.json) {
    printJson({ server: run.server, namespace: run.namespace, tools: results, ...tally });
    return;
  }
  printTable(
    ["TOOL", "RESULT", "DETAIL"],
    results.map((r) => [r.tool, r.status, r.detail]),
  );
  const verdict = tally.different + tally.failed === 0 ? "OK" : "DIFFERENT";
  process.stdout.write(
    `${bold(`${verdict}: ${results.length} tools, ${tally.equal} equal, ${tally.different} different, ${tally.failed} failed, ${tally.skipped} skipped (through MIG as ${run.namespace}.*)`)}\n`,
  );
}
