// An HTTP caller that closes its connection before its answer: the runtime cancels the invocation, its handler's
// signal fires with the reason, and its actor ends cancelled. Calls that wait for their answer are untouched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const started = new Set<string>();
const aborted = new Map<string, string>();
const waiting = defineCapability(
  anyDescriptor("test.gone.wait", ["unary"]),
  (payload, { signal, header }) =>
    new Promise((resolve, reject) => {
      started.add(header.message_id);
      const timer = setTimeout(() => resolve({ waited: payload.ms ?? 0 }), Number(payload.ms ?? 0));
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        aborted.set(header.message_id, String((signal.reason as Error)?.message ?? signal.reason));
        reject(signal.reason);
      });
    }),
  anySchemas,
);

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({ capabilities: [waiting] });
});
afterAll(async () => {
  await t?.stop();
});

const invoke = (messageId: string, ms: number, signal?: AbortSignal) =>
  fetch(`${t.http.url}/mig/v0.1/invoke/test.gone.wait`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme", message_id: messageId }, payload: { ms } }),
    signal,
  });

describe("an HTTP caller that goes before its answer", () => {
  it("has its invocation cancelled: the handler's signal fires with the reason, the actor ends cancelled", async () => {
    const messageId = crypto.randomUUID();
    const caller = new AbortController();
    const answer = invoke(messageId, 30_000, caller.signal).catch((err: Error) => err);
    await waitFor("the handler to start", () => started.has(messageId));
    caller.abort();
    expect(await answer).toBeInstanceOf(Error);
    await waitFor("the handler's signal", () => aborted.has(messageId));
    expect(aborted.get(messageId)).toMatch(/the HTTP client closed the connection before the answer/);
    await waitFor("no invocation in flight", () => t.runtime.work.invocations.size === 0);
    const metrics = (await t.get("/metrics")).text;
    expect(metrics).toMatch(/^mig_invocations_total\{capability="test\.gone\.wait",outcome="cancelled"\} 1$/m);
  });

  it("leaves the calls that wait alone, many at once", async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, () => invoke(crypto.randomUUID(), 5)));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect((await answer.json()).payload).toEqual({ waited: 5 });
    }
    expect(aborted.size).toBe(1);
  });
});
