// The MCP rows of the benchmark table: each runs test/bench/mcp.ts for one of its two measurements (short under
// --quick) and turns its JSON line into the row's figures, with the target checked next to the ratio.
import { cpuLine } from "./cpu.ts";
import { runScript, verdict } from "./script-rows.ts";
import type { BenchContext, RowDefinition, RunSettings } from "./types.ts";

/** tools/call through /mcp: at least this share of the bare SDK server's calls per second. */
const TOOLS_CALL_TARGET = 0.6;
/** An attached server's tool through MIG: at least this share of the SDK client calling it directly. */
const UPSTREAM_TARGET = 0.5;

interface SideFigures {
  calls_per_s: number;
  spread: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  cpu_us_per_call: Record<string, number>;
  bus_msgs_per_call?: number;
  loader_cores?: number;
}

interface Comparison {
  concurrency: number;
  ratio: number | null;
  pair_ratios: number[];
  mig: SideFigures;
  bare: SideFigures;
  background_cpu: number[];
}

type McpReport = { tools_call?: Comparison & { revision: string }; upstream?: Comparison & { via: string } };

function mcpScript(ctx: BenchContext, settings: RunSettings, only: "tools-call" | "upstream"): Promise<McpReport> {
  const size = settings.quick ? ["--rounds", "2", "--seconds", "1", "--warmup", "2"] : [];
  return runScript(
    ctx,
    `mcp-${only}`,
    "test/bench/mcp.ts",
    [...size, "--only", only, "--json"],
    settings.quick ? 120_000 : 300_000,
  ) as unknown as Promise<McpReport>;
}

/** The row's figures: both rates and the ratio with its target, the pairs' ratios, and each process's CPU per call. */
function figuresOf(c: Comparison, target: number, bareName: string): Record<string, number | string> {
  const ratio = c.ratio ?? 0;
  return {
    [`calls/s at ${c.concurrency}`]:
      `MIG ${c.mig.calls_per_s}/s · ${bareName} ${c.bare.calls_per_s}/s · ratio ${ratio.toFixed(2)} ` +
      `(target ${verdict(ratio, target, true)}) · pairs ${c.pair_ratios.join(", ")}`,
    mig_cps: c.mig.calls_per_s,
    bare_cps: c.bare.calls_per_s,
    ratio,
    "p50 / p99": `MIG ${c.mig.p50_ms} / ${c.mig.p99_ms} ms · ${bareName} ${c.bare.p50_ms} / ${c.bare.p99_ms} ms`,
    "CPU µs/call": `MIG ${cpuLine(c.mig.cpu_us_per_call)} · ${bareName} ${cpuLine(c.bare.cpu_us_per_call)}`,
    "loader cores": `MIG side ${c.mig.loader_cores ?? "?"} · ${bareName} side ${c.bare.loader_cores ?? "?"}`,
    "other work (share of cores)": c.background_cpu.join(", "),
  };
}

export const mcpRows: RowDefinition[] = [
  {
    id: "mcp-tools-call",
    name: "MCP tools/call at /mcp",
    measures:
      "tools/call of observatory.models.infer (in-process) at /mcp of `mig start` (Streamable HTTP, stateless, MCP 2025-11-25: the SDK client's default) against a bare @modelcontextprotocol/server v2 server behind @modelcontextprotocol/node answering the same tool with the same result; 16 callers, raw JSON-RPC POSTs over kept-alive connections from a loader process per side; test/bench/mcp.ts --only tools-call, 3 rounds of 3 s per side alternating bare, MIG, MIG, bare, …, the ratio the median over pairs of neighbouring rounds (--quick: 2 rounds of 1 s).",
    async custom(ctx, settings) {
      const { tools_call: c } = await mcpScript(ctx, settings, "tools-call");
      if (!c) throw new Error("mcp.ts gave no tools-call figures");
      return { revision: c.revision, ...figuresOf(c, TOOLS_CALL_TARGET, "bare SDK server") };
    },
  },
  {
    id: "mcp-upstream",
    name: "MCP server's tool through MIG",
    measures:
      "INVOKE of everything.echo over the NATS binding, answered by the direct lane of a `mig worker --mcp` process that attached server-everything over stdio, against the SDK client spawning the same server over stdio and calling echo directly; 16 callers, a loader process per side; test/bench/mcp.ts --only upstream, 3 rounds of 3 s per side alternating, the ratio the median over pairs of neighbouring rounds (--quick: 2 rounds of 1 s).",
    async custom(ctx, settings) {
      const { upstream: c } = await mcpScript(ctx, settings, "upstream");
      if (!c) throw new Error("mcp.ts gave no upstream figures");
      return {
        via: c.via,
        ...figuresOf(c, UPSTREAM_TARGET, "SDK client over stdio"),
        ...(c.mig.bus_msgs_per_call !== undefined ? { "bus messages per call": c.mig.bus_msgs_per_call } : {}),
      };
    },
  },
];
