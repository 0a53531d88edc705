// MCP interop, the mapping itself: initialize ↔ HELLO, tools/list ↔ DISCOVER (scoped), tools/call ↔ INVOKE, and the
// standard's MIG → JSON-RPC error table (docs/interop/MCP-MIG-MAPPING.md), over an MCP endpoint's Streamable HTTP.

import { brief, ensure, fail, isRecord, skip } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { CheckContext } from "../context.ts";
import { MCP_PROTOCOL_VERSION, type McpAnswer, resultOf, rpcErrorOf } from "../mcp-client.ts";
import { tokenScopes } from "./core-scopes.ts";
import { BASE, FIXTURE, INFER, INFER_BAD_PAYLOAD, INFER_PAYLOAD, invokePath, UNKNOWN_CAPABILITY } from "./fixtures.ts";
import {
  FIXTURE_SCOPE,
  firstDifference,
  type ListedTool,
  listTools,
  toolErrorCode,
  toolFor,
  toolOutput,
} from "./mcp-tools.ts";

/** The standard's MIG → JSON-RPC table (MCP-MIG-MAPPING.md §8.1), for the codes these checks provoke. */
const JSON_RPC = { MIG_INVALID_REQUEST: -32600, MIG_NOT_FOUND: -32601, MIG_UNSUPPORTED_CAPABILITY: -32601 } as const;
/** MCP's own code for an unknown tool and for arguments a tool refuses ("Invalid params"). */
const INVALID_PARAMS = -32602;
const PROTOCOL_VERSION = /^\d{4}-\d{2}-\d{2}$/;

const initialize = check(
  "MCP-1",
  "mcp",
  "initialize",
  "full",
  `initialize (protocol ${MCP_PROTOCOL_VERSION}) answers a protocolVersion, a serverInfo with a name, and the tools capability`,
  async (ctx) => {
    const session = await ctx.mcp.session();
    const result = resultOf(session.initialize);
    const version = result.protocolVersion;
    ensure(
      typeof version === "string" && PROTOCOL_VERSION.test(version),
      `initialize answered protocolVersion ${brief(version)}, not an MCP revision (YYYY-MM-DD)`,
    );
    const info = result.serverInfo;
    ensure(
      isRecord(info) && typeof info.name === "string" && info.name !== "",
      `initialize answered serverInfo ${brief(info)}, without a name`,
    );
    ensure(
      isRecord(result.capabilities) && isRecord(result.capabilities.tools),
      `initialize answered capabilities ${brief(result.capabilities)}, without tools`,
    );
    const asked = version === MCP_PROTOCOL_VERSION ? "" : ` (asked ${MCP_PROTOCOL_VERSION})`;
    return `protocol ${version}${asked}, server ${info.name}${typeof info.version === "string" ? ` ${info.version}` : ""}`;
  },
);

const initialized = check(
  "MCP-1",
  "mcp",
  "initialized-notification",
  "full",
  "notifications/initialized after initialize is accepted: 202, no body (MCP Streamable HTTP)",
  async (ctx) => {
    const session = await ctx.mcp.session();
    ensure(
      session.initializedStatus === 202,
      `notifications/initialized answered HTTP ${session.initializedStatus}${session.initializedText ? `: ${brief(session.initializedText)}` : ""}`,
    );
  },
);

const toolsList = check(
  "MCP-2",
  "mcp",
  "tools-list",
  "full",
  `tools/list shows a tool for ${INFER} (by name, _meta "mig/capability", or a description naming it), every tool with an object inputSchema; with an HTTP endpoint, no tool for a capability DISCOVER does not show`,
  async (ctx) => {
    const tools = await listTools(ctx);
    const bad = tools.filter((t) => !isRecord(t.tool.inputSchema) || t.tool.inputSchema.type !== "object");
    ensure(bad.length === 0, `tools without an object inputSchema: ${bad.map((t) => t.name).join(", ")}`);
    const infer = tools.find((t) => t.capability === INFER);
    ensure(infer, `no tool for ${INFER} among ${tools.length} tools: ${brief(tools.map((t) => t.name))}`);
    if (!ctx.hasHttp) return `${tools.length} tools; ${INFER} as ${infer.name}`;
    const answer = await ctx.post(`${BASE}/discover`, { header: ctx.header() });
    const body = ctx.expectSuccess(answer, "DiscoverResponse");
    const discovered = new Set(
      (Array.isArray(body.capabilities) ? body.capabilities : []).map((d) => (isRecord(d) ? String(d.id) : "")),
    );
    const extra = tools.filter((t) => t.capability !== undefined && !discovered.has(t.capability));
    ensure(
      extra.length === 0,
      `tools/list shows tools for capabilities DISCOVER does not: ${extra.map((t) => `${t.name} (${t.capability})`).join(", ")}`,
    );
    return `${tools.length} tools; ${INFER} as ${infer.name}; every capability a tool names is DISCOVERed`;
  },
);

const toolsScoped = check(
  "MCP-2",
  "mcp",
  "tools-scoped",
  "full",
  `tools/list with --limited-token (without ${FIXTURE_SCOPE}) hides the tool of ${FIXTURE.scoped}, which tools/list with --token shows`,
  async (ctx) => {
    if (!ctx.token || !ctx.limitedToken) {
      skip(`needs --token and --limited-token: two tokens of the tenant, the second without ${FIXTURE_SCOPE}`);
    }
    const limitedScopes = tokenScopes(ctx.limitedToken);
    if (!limitedScopes) skip("--limited-token is not a JWT whose claims can be read, so its scopes are unknown");
    if (limitedScopes.has(FIXTURE_SCOPE)) skip(`--limited-token holds ${FIXTURE_SCOPE}`);
    const full = await listTools(ctx);
    if (!full.some((t) => t.capability === FIXTURE.scoped))
      skip(`tools/list with --token shows no tool for the fixture ${FIXTURE.scoped} (docs/conformance.md, "Fixtures")`);
    const limited = await listTools(ctx, ctx.limitedToken);
    const leaked = limited.filter((t) => t.capability === FIXTURE.scoped);
    ensure(
      leaked.length === 0,
      `tools/list with --limited-token (scopes: ${[...limitedScopes].join(" ") || "none"}) shows ${leaked.map((t) => t.name).join(", ")}`,
    );
    const names = (list: ListedTool[]) => new Set(list.map((t) => t.name));
    const shownToBoth = [...names(limited)].filter((name) => names(full).has(name)).length;
    return `hidden from --limited-token: ${FIXTURE.scoped}; ${shownToBoth} tools shown to both`;
  },
);

const toolsCall = check(
  "MCP-3",
  "mcp",
  "tools-call",
  "full",
  `tools/call of the tool for ${INFER} with ${JSON.stringify(INFER_PAYLOAD)} answers the capability's output (structuredContent or a JSON text block); with an HTTP endpoint, the same output as INVOKE`,
  async (ctx) => {
    const name = await inferTool(ctx);
    const answer = await ctx.mcp.request("tools/call", { name, arguments: INFER_PAYLOAD });
    const result = resultOf(answer);
    ensure(result.isError !== true, `tools/call of ${name} answered an error result: ${brief(result.content)}`);
    const output = toolOutput(result);
    ensure(output, `tools/call of ${name} answered ${brief(result)}: no structuredContent, no JSON text block`);
    // The demo capability's output schema requires `result` (a string), as the standard's reference answers.
    ensure(typeof output.result === "string", `the output ${brief(output)} has no string "result"`);
    if (!ctx.hasHttp) return `output ${brief(output, 80)}`;
    const invoked = ctx.expectSuccess(
      await ctx.post(invokePath(INFER), { header: ctx.header(), payload: INFER_PAYLOAD }),
      "InvokeResponse",
    );
    const difference = firstDifference(output, invoked.payload);
    ensure(
      difference === undefined,
      `tools/call and INVOKE answer different outputs (tools/call ≠ INVOKE at ${difference})`,
    );
    return "the same output as INVOKE over HTTP";
  },
);

const unknownTool = check(
  "MCP-4",
  "mcp",
  "unknown-tool",
  "full",
  `tools/call of an unknown tool is a JSON-RPC error: ${JSON_RPC.MIG_UNSUPPORTED_CAPABILITY} (MIG_UNSUPPORTED_CAPABILITY in the standard's table) or ${INVALID_PARAMS} (MCP's own for an unknown tool); a data.mig_code says MIG_UNSUPPORTED_CAPABILITY or MIG_NOT_FOUND, with retryable false`,
  async (ctx) => {
    const answer = await ctx.mcp.request("tools/call", { name: UNKNOWN_CAPABILITY, arguments: {} });
    const error = expectRpcError(answer);
    ensure(
      error.code === JSON_RPC.MIG_UNSUPPORTED_CAPABILITY || error.code === INVALID_PARAMS,
      `the unknown tool answered JSON-RPC code ${brief(error.code)}; expected ${JSON_RPC.MIG_UNSUPPORTED_CAPABILITY} or ${INVALID_PARAMS}`,
    );
    return `code ${error.code}${checkErrorData(error, ["MIG_UNSUPPORTED_CAPABILITY", "MIG_NOT_FOUND"])}`;
  },
);

const invalidArguments = convention(
  "the standard does not say an INVOKE is validated against its input schema (CORE-3.http.invoke-invalid-payload); where it is, the refusal must follow the mapping",
  check(
    "MCP-4",
    "mcp",
    "invalid-arguments",
    "full",
    `tools/call of ${INFER} with ${JSON.stringify(INFER_BAD_PAYLOAD)} (fails the input schema) is refused: JSON-RPC ${JSON_RPC.MIG_INVALID_REQUEST} (the table's MIG_INVALID_REQUEST) or ${INVALID_PARAMS}, or an isError result naming MIG_INVALID_REQUEST`,
    async (ctx) => {
      const name = await inferTool(ctx);
      const answer = await ctx.mcp.request("tools/call", { name, arguments: INFER_BAD_PAYLOAD });
      const error = rpcErrorOf(answer);
      if (error) {
        ensure(
          error.code === JSON_RPC.MIG_INVALID_REQUEST || error.code === INVALID_PARAMS,
          `the refused arguments answered JSON-RPC code ${brief(error.code)}; expected ${JSON_RPC.MIG_INVALID_REQUEST} or ${INVALID_PARAMS}`,
        );
        return `JSON-RPC error ${error.code}${checkErrorData(error, ["MIG_INVALID_REQUEST"])}`;
      }
      const result = resultOf(answer);
      ensure(result.isError === true, `the arguments were accepted: ${brief(result)}`);
      const code = toolErrorCode(result);
      ensure(
        code === undefined || code === "MIG_INVALID_REQUEST",
        `the error result names ${code}; expected MIG_INVALID_REQUEST`,
      );
      return `an isError result${code ? ` naming ${code}` : ""}`;
    },
  ),
);

/** The tool of the demo capability; fails (MCP-2 says why) when tools/list shows none. */
async function inferTool(ctx: CheckContext): Promise<string> {
  const name = await toolFor(ctx, INFER);
  if (!name) fail(`tools/list shows no tool for ${INFER}`);
  return name;
}

function expectRpcError(answer: McpAnswer): Record<string, unknown> {
  const error = rpcErrorOf(answer);
  if (error) return error;
  if (answer.response && isRecord(answer.response.result))
    fail(`${answer.op} answered a result, not a JSON-RPC error: ${brief(answer.response.result)}`);
  fail(`${answer.op} answered HTTP ${answer.status} without a JSON-RPC response: ${brief(answer.text)}`);
}

/**
 * When the error's `data` names a MIG code, it must be one of `codes` and carry `retryable` (the mapping's
 * "preserve retryability semantics through error mapping metadata"); returns a note for the pass line.
 */
function checkErrorData(error: Record<string, unknown>, codes: string[]): string {
  const data = error.data;
  if (!isRecord(data) || data.mig_code === undefined) return ", no MIG code in data";
  ensure(
    typeof data.mig_code === "string" && codes.includes(data.mig_code),
    `data.mig_code is ${brief(data.mig_code)}; expected ${codes.join(" or ")}`,
  );
  ensure(data.retryable === false, `data.retryable is ${brief(data.retryable)}; expected false for ${data.mig_code}`);
  return `, data.mig_code ${data.mig_code}`;
}

export const mcpInteropChecks: Check[] = [
  initialize,
  initialized,
  toolsList,
  toolsScoped,
  toolsCall,
  unknownTool,
  invalidArguments,
];
