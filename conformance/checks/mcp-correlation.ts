// MCP interop, what must survive the translation: correlation ids (JSON-RPC ids, progress tokens, the MIG message id
// and the trace of a call), and the cancellation of a call in flight reaching the provider (fixture).

import { randomBytes } from "node:crypto";
import { brief, ensure, fail, isRecord, UUID_PATTERN } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import { resultOf, rpcErrorOf } from "../mcp-client.ts";
import { FIXTURE, fixtureTag, INFER, longDelayMs } from "./fixtures.ts";
import { auditRecord } from "./full-http.ts";
import { needFixtureTools, probeOverMcpUntil, toolErrorCode, toolFor } from "./mcp-tools.ts";

const requestIds = check(
  "MCP-5",
  "mcp",
  "request-ids",
  "full",
  `tools/call of ${INFER} with a string id (and a progress token) and with a number id: each answer carries the id as sent, every progress notification the token`,
  async (ctx) => {
    const name = await toolFor(ctx, INFER);
    if (!name) fail(`tools/list shows no tool for ${INFER}`);
    const token = `conformance-${ctx.runId}-progress`;
    const ids: (string | number)[] = [`conformance-${ctx.runId}-id`, 700_000_000 + randomBytes(2).readUInt16BE()];
    let progress = 0;
    for (const id of ids) {
      const meta = typeof id === "string" ? { _meta: { progressToken: token } } : {};
      const answer = await ctx.mcp.request(
        "tools/call",
        { name, arguments: { input: "correlation ids" }, ...meta },
        { id },
      );
      resultOf(answer);
      ensure(
        answer.response?.id === id,
        `the answer to request id ${JSON.stringify(id)} carries id ${brief(answer.response?.id)}`,
      );
      for (const note of answer.notifications) {
        if (note.method !== "notifications/progress") continue;
        progress++;
        const sent = isRecord(note.params) ? note.params.progressToken : undefined;
        ensure(sent === token, `a progress notification carries token ${brief(sent)}; the call sent ${token}`);
      }
    }
    return `string and number ids kept${progress > 0 ? `; ${progress} progress notifications with the token` : ""}`;
  },
);

const auditCorrelation = convention(
  "the standard asks that correlation ids be preserved but names no field that shows them: the result's _meta[\"mig/message_id\"] is this runtime's, and the audit log (GET /admin/v0.1/audit) with mcp_request_id and traceparent is its route (FULL-3.http.audit-log)",
  check(
    "MCP-5",
    "mcp",
    "audit-correlation",
    "full",
    `tools/call of ${INFER} with _meta.traceparent names the MIG message id in _meta["mig/message_id"]; the audit log read over HTTP has that INVOKE's record with the JSON-RPC id (mcp_request_id) and the trace id`,
    async (ctx) => {
      const name = await toolFor(ctx, INFER);
      if (!name) fail(`tools/list shows no tool for ${INFER}`);
      const traceId = randomBytes(16).toString("hex");
      const traceparent = `00-${traceId}-${randomBytes(8).toString("hex")}-01`;
      const id = `conformance-${ctx.runId}-trace`;
      const answer = await ctx.mcp.request(
        "tools/call",
        { name, arguments: { input: "trace" }, _meta: { traceparent } },
        { id },
      );
      const result = resultOf(answer);
      const messageId = isRecord(result._meta) ? result._meta["mig/message_id"] : undefined;
      ensure(
        typeof messageId === "string" && UUID_PATTERN.test(messageId),
        `the result's _meta names no MIG message id ("mig/message_id"): ${brief(result._meta)}`,
      );
      const path = `/admin/v0.1/audit?tenant=${encodeURIComponent(ctx.tenant)}&limit=1000`;
      const tried: string[] = [];
      const record = await auditRecord(ctx, path, messageId, tried);
      if (!record) fail(`no audit record of message ${messageId}: ${tried.join("; ")}`);
      ensure(record.target === INFER, `the audit record of ${messageId} names target ${brief(record.target)}`);
      ensure(
        record.mcp_request_id === id,
        `the audit record of ${messageId} names mcp_request_id ${brief(record.mcp_request_id)}; the request id was ${id}`,
      );
      ensure(
        typeof record.traceparent === "string" && record.traceparent.split("-")[1] === traceId,
        `the audit record of ${messageId} names traceparent ${brief(record.traceparent)}; the call sent ${traceparent}`,
      );
      return `request ${id} → message ${messageId}, trace ${traceId.slice(0, 8)}… kept`;
    },
  ),
);

const cancelInFlight = check(
  "MCP-6",
  "mcp",
  "cancel-in-flight",
  "full",
  `notifications/cancelled of a running tools/call of ${FIXTURE.slow} is accepted, the call ends, the probe says the provider's run was aborted, and the next call is answered`,
  async (ctx) => {
    const [slowTool, probeTool] = await needFixtureTools(ctx, FIXTURE.slow, FIXTURE.probe);
    const tag = fixtureTag(ctx.runId, "cancel-mcp");
    const id = `conformance-${ctx.runId}-cancel`;
    const stop = new AbortController();
    const delayMs = longDelayMs(ctx.timeoutMs);
    // Settled at once: the request is awaited later, and must never be an unhandled rejection.
    const calling = ctx.mcp
      .request(
        "tools/call",
        { name: slowTool, arguments: { delay_ms: delayMs, tag } },
        { id, signal: stop.signal, timeoutMs: ctx.timeoutMs * 3 },
      )
      .then(
        (answer) => ({ answer }),
        (error: unknown) => ({ error }),
      );
    try {
      const running = await probeOverMcpUntil(ctx, probeTool, tag, (run) => run.state !== "unknown");
      ensure(running.state === "running", `the ${FIXTURE.slow} run never showed as running (probe: ${brief(running)})`);
      const session = await ctx.mcp.session();
      const ack = await ctx.mcp.notify(session, "notifications/cancelled", {
        requestId: id,
        reason: "conformance check",
      });
      ensure(
        ack.status >= 200 && ack.status <= 299,
        `notifications/cancelled answered HTTP ${ack.status}: ${brief(ack.text)}`,
      );
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), ctx.timeoutMs);
      });
      const outcome = await Promise.race([calling, late]).finally(() => clearTimeout(timer));
      if (outcome === "late") fail(`the call still runs ${ctx.timeoutMs} ms after notifications/cancelled`);
      if ("error" in outcome) fail(`the cancelled call failed: ${brief(String(outcome.error))}`);
      const ended = endingOf(outcome.answer);
      const run = await probeOverMcpUntil(ctx, probeTool, tag, (r) => r.state !== "running");
      ensure(
        run.state === "aborted",
        `the call was cancelled, but the provider's work ${run.state === "running" ? "is still running" : `ended ${run.state}`}`,
      );
      return `the call ${ended}; the provider was aborted with ${run.reason ?? "?"}; the next call was answered`;
    } finally {
      stop.abort();
    }
  },
);

/** How a cancelled call's request ended: MCP lets the server answer it (an error) or leave it without an answer. */
function endingOf(answer: Parameters<typeof rpcErrorOf>[0]): string {
  const error = rpcErrorOf(answer);
  if (error) return `answered JSON-RPC error ${brief(error.code)}`;
  const result = answer.response?.result;
  if (isRecord(result)) {
    if (result.isError !== true) fail(`the cancelled call answered a result as if it had run: ${brief(result)}`);
    const code = toolErrorCode(result);
    return `answered an error result${code ? ` (${code})` : ""}`;
  }
  return `ended without an answer (HTTP ${answer.status})`;
}

export const mcpCorrelationChecks: Check[] = [requestIds, auditCorrelation, cancelInFlight];
