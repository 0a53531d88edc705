// The audit line writer: the JSON of the record, field for field, on the runtime's own strings and on hostile ones.
import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../runtime/policy/audit.ts";
import { auditLine } from "../runtime/policy/audit-line.ts";

// Every field of AuditRecord, optional ones included: a field added to the interface fails to compile here until the
// writer (and this record) carries it.
const full = {
  ts: "2026-12-07T01:02:03.456Z",
  server_id: "5f0c1a8e-8b7e-4d0a-9d0e-3c5f5a7b9e22",
  kind: "operation",
  binding: "nats",
  actor: "anonymous",
  authenticated: false,
  tenant: "acme",
  requested_tenant: "other",
  operation: "invoke",
  target: "bench.echo",
  decision: "deny",
  outcome: "error",
  code: "MIG_FORBIDDEN",
  reason: 'header.tenant_id "other" differs from the tenant "acme"',
  message_id: "6a1b2c3d-0000-4000-8000-000000000001",
  traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  mcp_method: "tools/call",
  mcp_name: "bench.echo",
  mcp_request_id: "7",
} satisfies Required<AuditRecord>;

const hostile = [
  '"',
  "\\",
  "\n\r\t",
  "\u0000\u001f",
  "\ud800",
  "\udfff x",
  "ok \ud83d\ude00 emoji",
  "é ü ß 中文",
  "</script>",
  "\u2028\u2029",
];

describe("auditLine", () => {
  it("writes every field of a record as JSON.stringify would read back", () => {
    expect(JSON.parse(auditLine(full))).toEqual(full);
    expect(Object.keys(JSON.parse(auditLine(full))).sort()).toEqual(Object.keys(full).sort());
  });

  it("leaves out the optional fields a record does not have", () => {
    const {
      requested_tenant,
      target,
      code,
      reason,
      message_id,
      traceparent,
      mcp_method,
      mcp_name,
      mcp_request_id,
      ...required
    } = full;
    const record: AuditRecord = { ...required, decision: "allow", outcome: "ok" };
    expect(auditLine(record)).toBe(JSON.stringify(record));
  });

  it("escapes any string as JSON does, lone surrogates included", () => {
    for (const text of hostile) {
      const record: AuditRecord = { ...full, actor: text, tenant: text, target: text, reason: text, message_id: text };
      const line = auditLine(record);
      expect(JSON.parse(line)).toEqual(JSON.parse(JSON.stringify(record)));
      expect(line).not.toMatch(/[\n\r]/);
    }
  });
});
