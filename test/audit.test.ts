// The audit log's storage: the records of one flush and tenant share a stream message, and reading them back
// through the admin route, newest first or page by page from a cursor, still yields each record once, in order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_STREAM } from "../runtime/policy/audit.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(async () => {
  await t?.stop();
});

async function audit(
  query: string,
): Promise<{ records: { seq: number; message_id: string; operation: string }[]; last_seq: number }> {
  const res = await t.get(`/admin/v0.1/audit?${query}`);
  expect(res.status).toBe(200);
  return JSON.parse(res.text);
}

describe("audit records in batches", () => {
  it("stores many records per stream message and pages through them from a cursor, each record once", async () => {
    const before = await audit("tenant=acme&limit=1");
    const sent: string[] = [];
    // Concurrent publishes land in one flush (and one message per tenant).
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const message_id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
        sent.push(message_id);
        const res = await t.post(
          "/mig/v0.1/publish/audit.batch",
          { header: { message_id }, payload: { i } },
          { "x-tenant-id": "acme" },
        );
        expect(res.status).toBe(200);
      }),
    );
    t.runtime.audit!.flush();
    await t.runtime.bus.nc.flush();

    const newest = await audit("tenant=acme&limit=40");
    expect(newest.records.map((r) => r.message_id).sort()).toEqual([...sent].sort());
    expect(newest.records.at(-1)!.seq).toBe(newest.last_seq);
    const stream = await t.runtime.bus.jsm.streams.info(AUDIT_STREAM);
    expect(stream.state.messages).toBeLessThan(40);

    // Forward paging from the cursor before these records, 7 at a time, crosses message boundaries.
    const paged: { seq: number; message_id: string }[] = [];
    let cursor = before.last_seq;
    for (;;) {
      const page = await audit(`tenant=acme&limit=7&after=${cursor}`);
      if (page.records.length === 0) break;
      expect(page.records.length).toBeLessThanOrEqual(7);
      paged.push(...page.records);
      cursor = page.records.at(-1)!.seq;
    }
    expect(paged.map((r) => r.message_id)).toEqual(newest.records.map((r) => r.message_id));
    const seqs = paged.map((r) => r.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  });
});
