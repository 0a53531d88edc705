// Answers larger than one write slice (bindings/http/respond.ts, ANSWER_SLICE) are written a slice per turn of the
// event loop. Over a real socket: they arrive whole, byte for byte as the Content-Length says, with no character
// broken where a slice ends, including an emoji (two UTF-16 units) that straddles the boundary.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANSWER_SLICE } from "../bindings/http/respond.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const EMOJI = "\u{1F600}";

/** A text of `pad` ASCII characters and then emoji past several slice boundaries. */
const blobOf = (pad: number) => "x".repeat(pad) + EMOJI.repeat(2 * ANSWER_SLICE);

const big = defineCapability(
  anyDescriptor("test.big", ["unary"]),
  (payload) => ({ blob: blobOf(Number(payload.pad)) }),
  anySchemas,
);

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({ capabilities: [big] });
});
afterAll(async () => {
  await t?.stop();
});

async function invokeBig(pad: number): Promise<{ bytes: Buffer; length: string | null }> {
  const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.big`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { pad } }),
  });
  expect(res.status).toBe(200);
  return { bytes: Buffer.from(await res.arrayBuffer()), length: res.headers.get("content-length") };
}

describe("answers larger than a write slice", () => {
  it("arrive whole and intact, whichever half of an emoji a slice boundary falls on", async () => {
    // One of two neighbouring paddings puts a boundary between an emoji's two UTF-16 units.
    for (const pad of [0, 1]) {
      const { bytes, length } = await invokeBig(pad);
      expect(Number(length)).toBe(bytes.length);
      const text = bytes.toString("utf8");
      expect(text).not.toContain("\uFFFD");
      expect(JSON.parse(text).payload.blob).toBe(blobOf(pad));
    }
  });

  it("several at once on one runtime each arrive whole", async () => {
    const answers = await Promise.all([0, 1, 2, 3, 4, 5].map(invokeBig));
    answers.forEach(({ bytes }, pad) => {
      expect(JSON.parse(bytes.toString("utf8")).payload.blob).toBe(blobOf(pad));
    });
  });
});
