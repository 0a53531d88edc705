// Reply subjects over NATS: the runtime answers one named inbox, never a wildcard (`_INBOX.*`, `_INBOX.>`) or a subject with an empty token.
import { connect as netConnect } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { replySubjectAllowed } from "../runtime/policy/policy.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** Publishes requests with the raw client protocol (nats.js would refuse these reply subjects) and waits for the server's PONG. */
function rawPublish(url: string, requests: { subject: string; reply: string; body: string }[]): Promise<void> {
  const { hostname, port } = new URL(url.replace(/^nats:/, "http:"));
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(port), hostname);
    let text = "";
    let sent = false;
    socket.on("data", (chunk) => {
      text += chunk.toString("latin1");
      if (!sent && text.includes("INFO ")) {
        sent = true;
        const pubs = requests
          .map((r) => `PUB ${r.subject} ${r.reply} ${Buffer.byteLength(r.body)}\r\n${r.body}\r\n`)
          .join("");
        socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n${pubs}PING\r\n`);
      }
      if (text.includes("-ERR")) {
        socket.destroy();
        reject(new Error(`the server refused the raw requests: ${text}`));
      } else if (text.includes("PONG")) {
        socket.destroy();
        resolve();
      }
    });
    socket.on("error", reject);
  });
}

const BAD_REPLIES = [
  "_INBOX.*",
  "_INBOX.>",
  "_INBOX.abc.*",
  "_INBOX.abc.>",
  "_INBOX_acme.>",
  "_INBOX_acme.*",
  "_INBOX..abc",
  "_INBOX.abc.",
];

let t: TestRuntime;
let binding: NatsBinding;
let snooper: NatsConnection;
let caller: NatsConnection;
const snooped: string[] = [];

beforeAll(async () => {
  t = await startTestRuntime();
  binding = await startNatsBinding(t.runtime, t.runtime.authenticator);
  // Anyone listening on every inbox would receive what the runtime publishes to a wildcard reply subject.
  snooper = await connect({ servers: t.runtime.natsUrl });
  // (The good request's own answer also reaches it: only the refused subjects are kept.)
  for (const pattern of ["_INBOX.>", "_INBOX_acme.>"]) {
    snooper.subscribe(pattern, {
      callback: (_err, msg) => {
        if (BAD_REPLIES.includes(msg.subject)) snooped.push(msg.subject);
      },
    });
  }
  await snooper.flush();
  caller = await connect({ servers: t.runtime.natsUrl, inboxPrefix: "_INBOX_acme" });
});
afterAll(async () => {
  await caller?.close();
  await snooper?.close();
  await binding?.close();
  await t?.stop();
});

async function refusedCount(): Promise<number> {
  const metric = await t.runtime.metrics.natsDropped.get();
  return metric.values.find((v) => v.labels.reason === "reply_subject_refused")?.value ?? 0;
}

describe("reply subjects with a wildcard or an empty token", () => {
  it("are refused by the policy", () => {
    for (const reply of BAD_REPLIES) expect(replySubjectAllowed(reply, "acme"), reply).toBe(false);
    expect(replySubjectAllowed("_INBOX.abc.1", "acme")).toBe(true);
    expect(replySubjectAllowed("_INBOX_acme.abc.1", "acme")).toBe(true);
  });

  it("get no answer over NATS (hello, invoke, stream start); each is counted, nothing is published to them, and a good request is answered", async () => {
    const before = await refusedCount();
    const operations = [
      {
        subject: "mig.v0_1.acme.hello",
        body: JSON.stringify({ header: { tenant_id: "acme" }, supported_versions: ["0.1"] }),
      },
      {
        subject: "mig.v0_1.acme.invoke.observatory.models.infer",
        body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "x" } }),
      },
      {
        subject: "mig.v0_1.acme.control.stream",
        body: JSON.stringify({
          header: { tenant_id: "acme" },
          capability: "observatory.models.infer",
          payload: { input: "x" },
        }),
      },
    ];
    await rawPublish(
      t.runtime.natsUrl,
      operations.flatMap((op) => BAD_REPLIES.map((reply) => ({ ...op, reply }))),
    );

    // Requests from one connection reach the runtime in order, and its answers leave in order: once the good
    // request's answer is back (and the snooper's connection is flushed), any answer to a refused one would be here.
    const answer = await caller.request("mig.v0_1.acme.hello", JSON.stringify({ header: { tenant_id: "acme" } }), {
      timeout: 10_000,
    });
    expect(answer.json<{ error?: unknown }>().error).toBeUndefined();
    await snooper.flush();

    expect(snooped).toEqual([]);
    expect((await refusedCount()) - before).toBe(operations.length * BAD_REPLIES.length);
  });
});
