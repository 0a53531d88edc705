// HTTP binding, the required routes: every route of the standard's OpenAPI under /mig/v0.1 answers with a MIG envelope.

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { brief, ensure, isRecord } from "../assert.ts";
import { type Check, check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { HttpAnswer } from "../http-client.ts";
import { BASE, INFER, INFER_PAYLOAD, invokePath } from "./fixtures.ts";

/** Why an answer shows the route is missing (not a MIG envelope), or undefined when it is one. */
function notEnvelope(answer: HttpAnswer): string | undefined {
  if (isRecord(answer.body) && isRecord(answer.body.header)) return undefined;
  return `${answer.op} answered ${answer.status} ${answer.contentType || "(no content-type)"}: ${brief(answer.text, 60)}`;
}

/** Opens the SSE route and reports how it answered: an event stream, an error envelope, or something else. */
async function subscribeAnswer(ctx: CheckContext, topic: string): Promise<string | undefined> {
  const path = `${BASE}/subscribe/${encodeURIComponent(topic)}?resume_cursor=0`;
  const sub = ctx.subscribe(path);
  const until = Date.now() + ctx.timeoutMs;
  while (sub.status === undefined && !sub.events.done && Date.now() < until) await sleep(20);
  sub.close();
  if (sub.status === 200 && sub.contentType?.startsWith("text/event-stream")) return undefined;
  if (sub.status === undefined) return `GET ${path.split("?")[0]}: ${sub.events.failure?.message ?? "no answer"}`;
  let body: unknown;
  try {
    body = JSON.parse(sub.errorText ?? "");
  } catch {
    body = undefined;
  }
  ctx.record("http", `GET ${path.split("?")[0]}`, body);
  if (isRecord(body) && isRecord(body.header) && isRecord(body.error)) return undefined;
  return `GET ${path.split("?")[0]} answered ${sub.status} ${sub.contentType || "(no content-type)"}: ${brief(sub.errorText, 60)}`;
}

const requiredRoutes = check(
  "HTTP-1",
  "http",
  "required-routes",
  "core",
  "each route of the standard's HTTP binding answers a MIG envelope (success or {header, error}), not a bare 404/405: hello, discover, invoke, publish, subscribe (SSE), cancel, heartbeat; stream (WebSocket) is recommended",
  async (ctx) => {
    const topic = `conformance.${ctx.runId}.routes`;
    const target = randomUUID();
    const answers = [
      await ctx.post(`${BASE}/hello`, {
        header: ctx.header(),
        supported_versions: ["0.1"],
        requested_bindings: ["http"],
      }),
      await ctx.post(`${BASE}/discover`, { header: ctx.header() }),
      await ctx.post(invokePath(INFER), { header: ctx.header(), payload: INFER_PAYLOAD }),
      await ctx.post(`${BASE}/publish/${encodeURIComponent(topic)}`, {
        header: ctx.header(),
        topic,
        payload: { n: 1 },
      }),
      await ctx.post(`${BASE}/cancel/${target}`, { header: ctx.header(), target_message_id: target }),
      await ctx.post(`${BASE}/heartbeat`, { header: ctx.header(), interval_ms: 5000 }),
    ];
    const missing = answers.map(notEnvelope).filter((problem) => problem !== undefined);
    const sse = await subscribeAnswer(ctx, topic);
    if (sse) missing.push(sse);
    ensure(missing.length === 0, `${missing.length} of 7 required routes: ${missing.join(" | ")}`);
    const websocket = await ctx
      .websocket(`${BASE}/stream`)
      .then((session) => {
        session.close();
        return "upgrades";
      })
      .catch((err: unknown) => `does not upgrade (${err instanceof Error ? err.message : String(err)})`);
    return `7 required routes answer; GET ${BASE}/stream (recommended) ${websocket}`;
  },
);

export const httpRouteChecks: Check[] = [requiredRoutes];
