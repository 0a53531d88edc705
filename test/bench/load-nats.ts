// NATS load generator (run as its own process): N callers make request/reply calls on one
// subject in a closed loop over one connection and print the figures as JSON lines.
//
//   one run:  node --import tsx test/bench/load-nats.ts --servers 127.0.0.1:4222 \
//               --subject bench.echo --body '{"a":1}' --concurrency 64 --warmup-ms 2000 --duration-ms 10000
//   on command: ... --serve, then one {"warmup_ms":…,"duration_ms":…} line per run on stdin
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { checkProbeReply, describe, failedResult, parseLoaderArgs, runLoader } from "./closed-loop.ts";

const REQUEST_TIMEOUT_MS = 5_000;

const args = parseLoaderArgs(["servers", "subject"]);
const subject = String(args.values.subject);
const body = new TextEncoder().encode(args.body);

let nc: NatsConnection;
try {
  nc = await connect({ servers: String(args.values.servers).split(","), name: "mig-bench-load" });
} catch (err) {
  process.stdout.write(`${JSON.stringify(failedResult("nats", args, `connect: ${describe(err)}`))}\n`);
  process.exit(2);
}

await runLoader(args, {
  tool: "nats",
  async probe() {
    const reply = await nc.request(subject, body, { timeout: REQUEST_TIMEOUT_MS });
    return checkProbeReply(reply.string());
  },
  async call() {
    await nc.request(subject, body, { timeout: REQUEST_TIMEOUT_MS });
  },
  async close() {
    await nc.close();
  },
});
