// Retries as a caller relies on them, on every transport: a MIG_BACKPRESSURE is tried again under the one
// idempotency key the client made, and the capability's handler runs once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { MigClient } from "../client/client.ts";
import { grpcTransport } from "../client/grpc.ts";
import { httpTransport } from "../client/http.ts";
import { natsTransport } from "../client/nats.ts";
import type { Transport } from "../client/transport.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import type { MigError } from "../schemas/errors.ts";
import type { JsonObject } from "../schemas/types.ts";
import { anyDescriptor as descriptor, anySchemas as schemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

/** Each invocation the handler ran: its payload and the idempotency key it carried. */
const handled: { payload: JsonObject; key: string | undefined }[] = [];
let release: () => void = () => undefined;
let released = Promise.resolve();

const gate = defineCapability(
  descriptor("test.gate", ["unary"]),
  async (payload, { header }) => {
    handled.push({ payload, key: header.idempotency_key });
    if (payload.hold) await released;
    return { n: payload.n ?? null };
  },
  schemas,
);

let rt: TestRuntime;
let grpc: GrpcBinding;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  // One invocation at a time: a second one is refused with MIG_BACKPRESSURE while the first holds the capacity.
  rt = await startTestRuntime({ capabilities: [gate], config: { capacity: 1 } });
  const nats = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
  grpc = await startGrpcBinding(rt.runtime, rt.runtime.authenticator, "127.0.0.1:0");
  closers.push(
    () => grpc.close(0),
    () => nats.close(),
  );
});

afterAll(async () => {
  for (const close of closers) await close();
  await rt?.stop();
});

/** The transport with its invoke counted: what each try on the wire carried and how it ended. */
function counting(transport: Transport, tries: { key: string | undefined; code: string }[]): Transport {
  return Object.create(transport, {
    invoke: {
      value: async (...args: Parameters<Transport["invoke"]>) => {
        const key = args[1].header.idempotency_key;
        try {
          const answer = await transport.invoke(...args);
          tries.push({ key, code: "ok" });
          return answer;
        } catch (err) {
          tries.push({ key, code: (err as MigError).code });
          throw err;
        }
      },
    },
  });
}

const transports: [string, () => Promise<Transport>][] = [
  ["http", async () => httpTransport(new URL(rt.http.url))],
  ["nats", () => natsTransport(new URL(rt.runtime.natsUrl))],
  ["grpc", async () => grpcTransport(new URL(`grpc://${grpc.address}`))],
];

describe.each(transports)("over %s", (name, open) => {
  it("a MIG_BACKPRESSURE is retried under one idempotency key, and the handler runs once", async () => {
    released = new Promise<void>((resolve) => (release = resolve));
    const tries: { key: string | undefined; code: string }[] = [];
    const client = new MigClient(counting(await open(), tries), { tenant: "acme" });
    try {
      const holding = client.invoke("test.gate", { n: `${name}-1`, hold: true }, { retry: false });
      await waitFor("the first invocation to hold the capacity", () => rt.runtime.work.invocations.size === 1);
      const second = client.invoke("test.gate", { n: `${name}-2` }, { retry: { attempts: 20, baseDelayMs: 50 } });
      await waitFor("a refused try", () => tries.length >= 1);
      release();
      expect((await holding).payload).toEqual({ n: `${name}-1` });
      expect((await second).payload).toEqual({ n: `${name}-2` });

      const refused = tries.filter((t) => t.code === "MIG_BACKPRESSURE");
      expect(refused.length).toBeGreaterThanOrEqual(1);
      const runs = handled.filter((h) => h.payload.n === `${name}-2`);
      expect(runs).toHaveLength(1);
      const key = runs[0]!.key;
      expect(key).toBeTypeOf("string");
      // Every try of the second call carried its key: the refused ones and the one that ran.
      const secondTries = tries.filter((t) => t.key === key);
      expect(secondTries).toHaveLength(refused.length + 1);
      expect(secondTries.at(-1)?.code).toBe("ok");
    } finally {
      await client.close();
    }
  });
});
