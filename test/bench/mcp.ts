// MCP benchmarks (run: node --import tsx test/bench/mcp.ts), each a path through MIG against the bare MCP tool it is
// built on, both loaded at --concurrency callers by a load generator in a process of its own, in alternating rounds
// (bare, MIG, MIG, bare, …; paired-rounds.ts): the ratio is the median over pairs of neighbouring rounds, and each
// process's CPU µs per call is read from /proc around every round.
//  1. tools-call: `tools/call` of observatory.models.infer (the demo capability, in the gateway's process) at /mcp of
//     `mig start`, against a bare SDK server (baseline-mcp.ts: the SDK's stateless Streamable HTTP handler behind its
//     Node adapter) answering the same tool with the same result. The loader sends raw JSON-RPC POSTs over kept-alive
//     connections, as the SDK client sends them, on the revision the SDK client speaks by default, 2025-11-25
//     (--revision 2026-07-28 for the other; --loader sdk: the SDK client itself, which costs more CPU per call than
//     either server and so measures itself).
//  2. upstream: the `echo` tool of server-everything, attached over stdio by a `mig worker --mcp` process, called as
//     the MIG capability everything.echo over the NATS binding (load-nats.ts; the worker's direct lane answers;
//     --via http: POST /mig/v0.1/invoke on the gateway, load-http.ts), against the SDK client spawning the same server
//     over stdio and calling it directly (load-mcp.ts --wire sdk-stdio).
// --only tools-call|upstream runs one; --json prints the report as one line (the bench table reads it); --profile
// <dir> runs the gateway, the worker and the bare SDK server under `node --cpu-prof`.
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { compareSides, type RoundSettings } from "./paired-rounds.ts";
import { descendantNamed, sleep, spawnTs } from "./processes.ts";
import { runBenchScript } from "./script-context.ts";
import { ServeLoader } from "./serve-loader.ts";
import { readyLine, startRuntime } from "./servers.ts";
import type { BenchContext } from "./types.ts";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    // Rounds per side (so as many pairs), each an unmeasured lead-in then the measured seconds, after a warm-up of
    // each side: short by default, to be run a few times on a shared machine; raise them for steadier figures.
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "3" },
    "lead-in": { type: "string", default: "0.5" },
    warmup: { type: "string", default: "3" },
    concurrency: { type: "string", default: "16" },
    revision: { type: "string", default: "2025-11-25" },
    loader: { type: "string", default: "raw" },
    via: { type: "string", default: "nats" },
    json: { type: "boolean", default: false },
    profile: { type: "string" },
  },
});

function number(name: string, text: string | undefined, { integer = false, zero = false } = {}): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !zero) || (integer && !Number.isInteger(n)))
    throw new Error(
      `--${name}: a ${zero ? "non-negative" : "positive"} ${integer ? "integer" : "number"}, got ${text}`,
    );
  return n;
}
function oneOf<T extends string>(name: string, text: string | undefined, allowed: readonly T[]): T {
  if (!allowed.includes(text as T)) throw new Error(`--${name}: one of ${allowed.join(", ")}, got ${text}`);
  return text as T;
}

const ONLY = values.only === undefined ? undefined : oneOf("only", values.only, ["tools-call", "upstream"]);
const SETTINGS: RoundSettings = {
  rounds: number("rounds", values.rounds, { integer: true }),
  durationMs: Math.round(number("seconds", values.seconds) * 1000),
  leadInMs: Math.round(number("lead-in", values["lead-in"], { zero: true }) * 1000),
  warmupMs: Math.round(number("warmup", values.warmup, { zero: true }) * 1000),
};
const CONCURRENCY = number("concurrency", values.concurrency, { integer: true });
const REVISION = oneOf("revision", values.revision, ["2025-11-25", "2026-07-28"]);
const LOADER = oneOf("loader", values.loader, ["raw", "sdk"]);
const VIA = oneOf("via", values.via, ["nats", "http"]);

const ROOT = resolve(import.meta.dirname, "../..");
const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const TOOL = "observatory.models.infer";
const TOOL_ARGUMENTS = { input: "hello" };
const ECHO_ARGUMENTS = { message: "hello" };
const TENANT = "bench";
const log = (line: string) => process.stderr.write(`${line}\n`);

/** The tools-call load generator, pointed at an MCP endpoint. */
function mcpHttpLoader(ctx: BenchContext, name: string, url: string): Promise<ServeLoader> {
  const args = ["--wire", LOADER === "sdk" ? "sdk-http" : "http", "--target", url, "--tool", TOOL];
  args.push("--revision", REVISION, "--body", JSON.stringify(TOOL_ARGUMENTS));
  return ServeLoader.start(ctx.root, name, "test/bench/load-mcp.ts", args, CONCURRENCY);
}

async function toolsCall(ctx: BenchContext) {
  log(`tools/call of ${TOOL} at ${CONCURRENCY} callers, MCP ${REVISION}, ${LOADER} loader`);
  const runtime = await startRuntime(ctx);
  const bare = spawnTs("baseline-mcp", ctx.root, "test/bench/baseline-mcp.ts", [], undefined, ctx.runtimeNodeArgs);
  const loaders: ServeLoader[] = [];
  try {
    const bareUrl = String((await bare.waitForLine(readyLine, ctx.startTimeoutMs)).url);
    loaders.push(await mcpHttpLoader(ctx, "load-mcp-bare", bareUrl));
    loaders.push(await mcpHttpLoader(ctx, "load-mcp-mig", `${runtime.httpBase}/mcp`));
    if (ctx.runtimeNodeArgs.length > 0) log(`  profiled: runtime pid ${runtime.pid}, bare server pid ${bare.pid}`);
    const { path, baseline, ...rest } = await compareSides(
      { label: "bare SDK server", loader: loaders[0]!, processes: { server: bare.pid } },
      {
        label: "MIG /mcp",
        loader: loaders[1]!,
        processes: runtime.processes?.() ?? {},
        natsMonitorUrl: runtime.natsMonitorUrl,
      },
      SETTINGS,
      log,
    );
    return { concurrency: CONCURRENCY, revision: REVISION, loader: LOADER, ...rest, mig: path, bare: baseline };
  } finally {
    await Promise.all(loaders.map((loader) => loader.close()));
    await Promise.all([runtime.stop(), bare.stop()]);
  }
}

/** One word of a POSIX command line (the worker's --mcp splits its value so, expanding nothing). */
const word = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/** Polls DISCOVER over HTTP until the gateway lists `capability` (its registry watch has seen the worker). */
async function untilListed(httpBase: string, capability: string, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const res = await fetch(`${httpBase}/mig/v0.1/discover`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: { tenant_id: TENANT } }),
    });
    const answer = (await res.json()) as { capabilities?: { id: string }[] };
    if (answer.capabilities?.some((c) => c.id === capability)) return;
    if (Date.now() > deadline) throw new Error(`the gateway did not list ${capability} within ${limitMs} ms`);
    await sleep(100);
  }
}

/** The loader of the MIG side of upstream: INVOKE of everything.echo over the NATS binding or over HTTP. */
function invokeLoader(ctx: BenchContext, natsUrl: string, httpBase: string): Promise<ServeLoader> {
  const header = { tenant_id: TENANT };
  if (VIA === "nats") {
    const body = JSON.stringify({ header, capability: "everything.echo", payload: ECHO_ARGUMENTS });
    const subject = `mig.v0_1.${TENANT}.invoke.everything.echo`;
    const args = ["--servers", natsUrl, "--subject", subject, "--body", body];
    return ServeLoader.start(ctx.root, "load-nats", "test/bench/load-nats.ts", args, CONCURRENCY);
  }
  const args = ["--url", `${httpBase}/mig/v0.1/invoke/everything.echo`];
  args.push("--body", JSON.stringify({ header, payload: ECHO_ARGUMENTS }));
  return ServeLoader.start(ctx.root, "load-http", "test/bench/load-http.ts", args, CONCURRENCY);
}

async function upstream(ctx: BenchContext) {
  log(`everything.echo through MIG (${VIA}) at ${CONCURRENCY} callers, against the SDK client over stdio`);
  const runtime = await startRuntime(ctx);
  // The worker gets the runtime's settings only, as startRuntime gives the gateway: none of the calling shell's MIG_*.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("MIG_")));
  const worker = spawnTs(
    "worker",
    ctx.root,
    "cli/main.ts",
    ["worker", "--mcp", `${word(process.execPath)} ${word(EVERYTHING)} stdio`, "--mcp-namespace", "everything"],
    { ...inherited, MIG_NATS_URL: `nats://${runtime.natsUrl}`, MIG_LOG_LEVEL: "info" },
    ctx.runtimeNodeArgs,
  );
  const loaders: ServeLoader[] = [];
  try {
    await worker.waitForLine((l) => (l.includes('"worker serving"') ? true : undefined), ctx.startTimeoutMs);
    // NATS invokes of a best_effort capability take the worker's direct lane once it opens: measure that lane.
    if (VIA === "nats")
      await worker.waitForLine(
        (l) => (l.includes('"direct lane answering NATS invokes"') ? true : undefined),
        ctx.startTimeoutMs,
      );
    await untilListed(runtime.httpBase, "everything.echo", ctx.startTimeoutMs);
    // The worker's one node child is the server it spawned.
    const mcpServer = descendantNamed(worker.pid, "node");
    loaders.push(await invokeLoader(ctx, runtime.natsUrl, runtime.httpBase));
    const direct = ["--wire", "sdk-stdio", "--target", JSON.stringify([process.execPath, EVERYTHING, "stdio"])];
    direct.push("--tool", "echo", "--revision", "2025-11-25", "--body", JSON.stringify(ECHO_ARGUMENTS));
    loaders.push(await ServeLoader.start(ctx.root, "load-mcp-stdio", "test/bench/load-mcp.ts", direct, CONCURRENCY));
    if (ctx.runtimeNodeArgs.length > 0) log(`  profiled: gateway pid ${runtime.pid}, worker pid ${worker.pid}`);
    const { path, baseline, ...rest } = await compareSides(
      {
        label: "SDK client → server over stdio",
        loader: loaders[1]!,
        processes: { mcp_server: Number(loaders[1]!.notes.mcp_server_pid) || undefined },
      },
      {
        label: `MIG ${VIA} → worker → server`,
        loader: loaders[0]!,
        processes: {
          gateway: runtime.pid,
          worker: worker.pid,
          mcp_server: mcpServer,
          nats_server: runtime.processes?.().nats_server,
        },
        natsMonitorUrl: runtime.natsMonitorUrl,
      },
      SETTINGS,
      log,
    );
    return { concurrency: CONCURRENCY, via: VIA, ...rest, mig: path, bare: baseline };
  } finally {
    await Promise.all(loaders.map((loader) => loader.close()));
    await worker.stop();
    await runtime.stop();
  }
}

await runBenchScript(
  ROOT,
  values.profile ? ["--cpu-prof", "--cpu-prof-dir", resolve(values.profile)] : [],
  values.json === true,
  async (ctx) => ({
    settings: {
      rounds: SETTINGS.rounds,
      seconds: SETTINGS.durationMs / 1000,
      lead_in_s: SETTINGS.leadInMs / 1000,
      warmup_s: SETTINGS.warmupMs / 1000,
    },
    ...(ONLY !== "upstream" ? { tools_call: await toolsCall(ctx) } : {}),
    ...(ONLY !== "tools-call" ? { upstream: await upstream(ctx) } : {}),
  }),
);
