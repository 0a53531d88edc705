// What the MCP checks share: the tool list (one tools/list per token and run), which capability a tool stands for,
// a tool result's output and MIG error code, the probe fixture over MCP, and a comparison of two JSON values.

import { setTimeout as sleep } from "node:timers/promises";
import { brief, ensure, fail, isRecord, skip } from "../assert.ts";
import type { CheckContext } from "../context.ts";
import { resultOf } from "../mcp-client.ts";
import type { FixtureRun } from "./fixture-runs.ts";
import { FIXTURE } from "./fixtures.ts";

/** The scope `mig.fixture.scoped` needs (docs/conformance.md, "Fixtures"). */
export const FIXTURE_SCOPE = "fixture:scoped";

export interface ListedTool {
  name: string;
  /** The MIG capability the tool stands for, when the listing says. */
  capability: string | undefined;
  tool: Record<string, unknown>;
}

const CAPABILITY_ID = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;
/** The description the standard's Go adapter gives every tool, which this runtime's default description starts with. */
const DESCRIBED = /\bMIG capability ([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+)/;

/**
 * The capability a tool stands for: its `_meta["mig/capability"]` (this runtime), else the id its description
 * names ("MIG capability <id>", the standard's adapter), else its name when that is a dotted id (the default rule,
 * tool name = capability id). The standard names no field for it.
 */
export function capabilityOf(tool: Record<string, unknown>): string | undefined {
  const meta = tool._meta;
  if (isRecord(meta) && typeof meta["mig/capability"] === "string") return meta["mig/capability"];
  const described = DESCRIBED.exec(typeof tool.description === "string" ? tool.description : "");
  if (described) return described[1];
  return typeof tool.name === "string" && CAPABILITY_ID.test(tool.name) ? tool.name : undefined;
}

/** Every tool tools/list shows to `token` (default: --token), all pages; one listing per token and run. */
export function listTools(ctx: CheckContext, token = ctx.token): Promise<ListedTool[]> {
  return ctx.memo(`mcp-tools-${token ?? ""}`, async () => {
    const tools: ListedTool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      const answer = await ctx.mcp.request("tools/list", cursor ? { cursor } : {}, { token });
      const result = resultOf(answer);
      if (!Array.isArray(result.tools)) fail(`tools/list answered tools ${brief(result.tools)}, not a list`);
      for (const tool of result.tools) {
        if (!isRecord(tool) || typeof tool.name !== "string") fail(`tools/list lists ${brief(tool)}, not a tool`);
        tools.push({ name: tool.name, capability: capabilityOf(tool), tool });
      }
      cursor = typeof result.nextCursor === "string" ? result.nextCursor : undefined;
      if (!cursor) return tools;
    }
    fail("tools/list kept answering a nextCursor after 50 pages");
  });
}

/** The name of the tool of `capability`: the one named by its id first, else the first listed. */
export async function toolFor(ctx: CheckContext, capability: string, token = ctx.token): Promise<string | undefined> {
  const tools = (await listTools(ctx, token)).filter((t) => t.capability === capability);
  return (tools.find((t) => t.name === capability) ?? tools[0])?.name;
}

/** The tools of the fixture capabilities a check needs; SKIPs naming those tools/list does not show. */
export async function needFixtureTools(ctx: CheckContext, ...capabilities: string[]): Promise<string[]> {
  const names = await Promise.all(capabilities.map((c) => toolFor(ctx, c)));
  const missing = capabilities.filter((_, i) => names[i] === undefined);
  if (missing.length > 0) {
    skip(
      `needs tools for the fixture ${missing.length === 1 ? "capability" : "capabilities"} ${missing.join(", ")} ` +
        `(docs/conformance.md, "Fixtures"), which tools/list does not show`,
    );
  }
  return names as string[];
}

/**
 * A tool result's output: its `structuredContent`, else its first text block read as JSON (the standard's adapter
 * answers the capability's output as one JSON text block); undefined when neither holds an object.
 */
export function toolOutput(result: Record<string, unknown>): Record<string, unknown> | undefined {
  if (isRecord(result.structuredContent)) return result.structuredContent;
  const content = Array.isArray(result.content) ? result.content : [];
  const text = content.find((block) => isRecord(block) && block.type === "text" && typeof block.text === "string");
  if (!isRecord(text)) return undefined;
  try {
    const value: unknown = JSON.parse(String(text.text));
    return isRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The MIG code an `isError` result names: in `_meta["mig/error"]`, or as `{error: {code}}` in its JSON text. */
export function toolErrorCode(result: Record<string, unknown>): string | undefined {
  const meta = result._meta;
  if (isRecord(meta) && isRecord(meta["mig/error"]) && typeof meta["mig/error"].mig_code === "string")
    return meta["mig/error"].mig_code;
  const output = toolOutput(result);
  return isRecord(output?.error) && typeof output.error.code === "string" ? output.error.code : undefined;
}

/** What the probe fixture, called as a tool, says of the run tagged `tag`. */
export async function probeOverMcp(ctx: CheckContext, probeTool: string, tag: string): Promise<FixtureRun> {
  const answer = await ctx.mcp.request("tools/call", { name: probeTool, arguments: { tag } });
  const result = resultOf(answer);
  ensure(result.isError !== true, `${FIXTURE.probe} answered an error result: ${brief(result.content)}`);
  const output = toolOutput(result);
  if (!output || typeof output.state !== "string")
    fail(`${FIXTURE.probe} answered ${brief(result)}, not {state, emitted}`);
  return {
    state: output.state as FixtureRun["state"],
    emitted: typeof output.emitted === "number" ? output.emitted : 0,
    ...(typeof output.reason === "string" ? { reason: output.reason } : {}),
  };
}

/** Probes over MCP until `done(run)` holds or the timeout passes; returns the last answer either way. */
export async function probeOverMcpUntil(
  ctx: CheckContext,
  probeTool: string,
  tag: string,
  done: (run: FixtureRun) => boolean,
): Promise<FixtureRun> {
  const until = Date.now() + ctx.timeoutMs;
  for (;;) {
    const run = await probeOverMcp(ctx, probeTool, tag);
    if (done(run) || Date.now() >= until) return run;
    await sleep(50);
  }
}

/** Where two JSON values first differ ("$.echo.input: 1 ≠ 2"), or undefined when they are equal (key order aside). */
export function firstDifference(a: unknown, b: unknown, path = "$"): string | undefined {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${path}: ${a.length} items ≠ ${b.length} items`;
    for (let i = 0; i < a.length; i++) {
      const difference = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (difference) return difference;
    }
    return undefined;
  }
  if (isRecord(a) && isRecord(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const key of keys) {
      if (!(key in a)) return `${path}.${key}: missing ≠ ${brief(b[key], 60)}`;
      if (!(key in b)) return `${path}.${key}: ${brief(a[key], 60)} ≠ missing`;
      const difference = firstDifference(a[key], b[key], `${path}.${key}`);
      if (difference) return difference;
    }
    return undefined;
  }
  return Object.is(a, b) ? undefined : `${path}: ${brief(a, 60)} ≠ ${brief(b, 60)}`;
}
