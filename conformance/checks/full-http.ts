// Full profile over HTTP: traceparent propagation, metrics by capability and error code, the audit log.

import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { brief, ensure, fail, isRecord, RFC3339_PATTERN } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { CheckContext } from "../context.ts";
import { INFER, INFER_PAYLOAD, invokePath } from "./fixtures.ts";

const traceparent = check(
  "FULL-1",
  "http",
  "traceparent",
  "full",
  "an INVOKE carrying a traceparent answers with a header.traceparent of the same trace id",
  async (ctx) => {
    const traceId = randomBytes(16).toString("hex");
    const sent = `00-${traceId}-${randomBytes(8).toString("hex")}-01`;
    const answer = await ctx.post(
      invokePath(INFER),
      { header: ctx.header({ traceparent: sent }), payload: INFER_PAYLOAD },
      { headers: { traceparent: sent } },
    );
    const body = ctx.expectSuccess(answer, "InvokeResponse");
    const header = body.header as Record<string, unknown>;
    const back = header.traceparent;
    ensure(typeof back === "string", `the answer's header has no traceparent (sent ${sent})`);
    ensure(back.split("-")[1] === traceId, `traceparent came back as ${brief(back)}, sent ${sent}`);
    return back === sent ? "same traceparent" : "same trace id, new span";
  },
);

const metrics = convention(
  "the standard requires metrics by capability and error code but names no route or format; /metrics in Prometheus text, labelled with capability ids and MIG codes, is the reference's",
  check(
    "FULL-2",
    "http",
    "metrics",
    "full",
    "GET /metrics (Prometheus text) has series labelled with the capability and with MIG error codes",
    async (ctx) => {
      const answer = await ctx.get("/metrics", { tenantHeader: false });
      ensure(
        answer.status === 200,
        `GET /metrics answered ${answer.status} (the reference serves Prometheus metrics there)`,
      );
      const series = answer.text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
      ensure(
        series.some((line) => line.includes(`"${INFER}"`)),
        `no series labelled "${INFER}"`,
      );
      const codes = new Set(series.flatMap((line) => line.match(/"MIG_[A-Z_]+"/g) ?? []));
      ensure(codes.size > 0, "no series labelled with a MIG error code (this run caused several errors)");
      return `error codes ${[...codes].join(", ")}`;
    },
  ),
);

/** Where an audit log may be read, and the names its records give the five fields the standard requires. */
const AUDIT_ROUTES = [
  {
    // This runtime (docs/security.md): the newest `limit` records of a tenant.
    path: (tenant: string) => `/admin/v0.1/audit?tenant=${encodeURIComponent(tenant)}&limit=1000`,
    fields: { actor: "actor", tenant: "tenant", capability: "target", outcome: "outcome", timestamp: "ts" },
  },
  {
    // The reference gateway (the standard's openapi/mig.pro.v0.1.yaml).
    path: (tenant: string) => `/pro/v0.1/audit/export?tenant_id=${encodeURIComponent(tenant)}`,
    fields: {
      actor: "actor",
      tenant: "tenant_id",
      capability: "capability",
      outcome: "outcome",
      timestamp: "timestamp",
    },
  },
] as const;

const auditLog = convention(
  "the standard requires the audit log's fields but no way to read it; GET /admin/v0.1/audit is this runtime's route (docs/security.md), GET /pro/v0.1/audit/export the reference's",
  check(
    "FULL-3",
    "http",
    "audit-log",
    "full",
    `after an INVOKE of ${INFER}, the audit log read over HTTP has its record, with actor, tenant, capability, outcome and timestamp`,
    async (ctx) => {
      const messageId = randomUUID();
      const answer = await ctx.post(invokePath(INFER), {
        header: ctx.header({ message_id: messageId }),
        payload: INFER_PAYLOAD,
      });
      ctx.expectSuccess(answer, "InvokeResponse");
      const tried: string[] = [];
      for (const route of AUDIT_ROUTES) {
        const path = route.path(ctx.tenant);
        const record = await auditRecord(ctx, path, messageId, tried);
        if (record === undefined) continue;
        const missing: string[] = [];
        for (const [field, key] of Object.entries(route.fields)) {
          const value = record[key];
          if (typeof value !== "string" || value === "") missing.push(`${field} (${key})`);
        }
        ensure(missing.length === 0, `the audit record of the INVOKE lacks ${missing.join(", ")}: ${brief(record)}`);
        ensure(
          record[route.fields.tenant] === ctx.tenant,
          `the audit record names tenant ${brief(record[route.fields.tenant])}`,
        );
        ensure(
          record[route.fields.capability] === INFER,
          `the audit record names capability ${brief(record[route.fields.capability])}`,
        );
        const ts = String(record[route.fields.timestamp]);
        ensure(RFC3339_PATTERN.test(ts), `the audit record's timestamp ${brief(ts)} is not RFC 3339`);
        return `GET ${path.split("?")[0]}: actor ${brief(record[route.fields.actor])}, outcome ${brief(record[route.fields.outcome])}`;
      }
      fail(`no audit record of the INVOKE with message_id ${messageId}: ${tried.join("; ")}`);
    },
  ),
);

/**
 * The record of `messageId` read from `path`, polling while the log catches up (it may be written asynchronously);
 * undefined when the route does not serve an audit log here, with why in `tried`.
 */
export async function auditRecord(
  ctx: CheckContext,
  path: string,
  messageId: string,
  tried: string[],
): Promise<Record<string, unknown> | undefined> {
  const until = Date.now() + ctx.timeoutMs;
  for (;;) {
    const answer = await ctx.get(path);
    const records = isRecord(answer.body) ? answer.body.records : undefined;
    if (answer.status !== 200 || !Array.isArray(records)) {
      tried.push(`GET ${path.split("?")[0]} answered ${answer.status} ${brief(answer.text, 60)}`);
      return undefined;
    }
    const record = records.find((r) => isRecord(r) && r.message_id === messageId);
    if (isRecord(record)) return record;
    if (Date.now() >= until) {
      tried.push(`GET ${path.split("?")[0]} listed ${records.length} records, none of it, within ${ctx.timeoutMs} ms`);
      return undefined;
    }
    await sleep(100);
  }
}

export const fullHttpChecks: Check[] = [traceparent, metrics, auditLog];
