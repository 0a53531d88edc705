// Raw NATS baseline of a stream (run as its own process): publishes `--count` copies of `--body` to `--subject`
// as fast as the client takes them, then flushes; prints {"ready":true} first and {"done":true} at the end.
//
//   node --import tsx test/bench/raw-stream-publisher.ts --servers 127.0.0.1:4222 --subject bench.stream --count 100000 --body '{...}'

import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { exitWithParent } from "./exit-with-parent.ts";

const { values } = parseArgs({
  options: {
    servers: { type: "string" },
    subject: { type: "string" },
    count: { type: "string" },
    body: { type: "string" },
    go: { type: "string" },
  },
});
if (!values.servers || !values.subject || !values.count || !values.body || !values.go)
  throw new Error("--servers, --subject, --count, --body and --go are required");
const nc = await connect({ servers: values.servers.split(","), name: "mig-bench-raw-stream" });
const count = Number(values.count);
const body = values.body;
nc.subscribe(values.go, {
  max: 1,
  callback: () => {
    void (async () => {
      for (let i = 0; i < count; i++) {
        nc.publish(values.subject!, body);
        // Yield now and then, as a real producer would, so the client can write out its buffer.
        if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
      }
      await nc.flush();
      process.stdout.write(`${JSON.stringify({ done: true })}\n`);
    })();
  },
});
await nc.flush();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
exitWithParent();
process.on("SIGTERM", () => void nc.close().then(() => process.exit(0)));
