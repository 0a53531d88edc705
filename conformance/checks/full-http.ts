// Full profile over HTTP: traceparent propagation, metrics by capability and error code, the audit log.

import { randomBytes } from "node:crypto";
import { brief, ensure, skip } from "../assert.ts";
import { type Check, check } from "../check.ts";
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

const metrics = check(
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
);

const auditLog = check(
  "FULL-3",
  "http",
  "audit-log",
  "full",
  "the audit log records actor, tenant, capability, outcome and timestamp per invocation",
  async () => skip("the audit log is not observable over the wire; inspect the endpoint's audit log"),
);

export const fullHttpChecks: Check[] = [traceparent, metrics, auditLog];
