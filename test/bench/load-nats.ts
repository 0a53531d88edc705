// NATS load generator (run as its own process): N callers make request/reply calls on one
// subject in a closed loop over one connection and print the figures as one JSON line.
//
//   node --import tsx test/bench/load-nats.ts --servers 127.0.0.1:4222 --subject bench.echo \
//     --body '{"a":1}' --concurrency 64 --warmup-ms 2000 --duration-ms 10000
import { connect } from "@nats-io/transport-node";
import {
  checkProbeReply,
  describe,
  failedResult,
  finish,
  parseLoaderArgs,
  runClosedLoop,
  toResult,
} from "./closed-loop.ts";

const REQUEST_TIMEOUT_MS = 5_000;

const args = parseLoaderArgs(["servers", "subject"]);
const subject = args.values.subject!;
const body = new TextEncoder().encode(args.body);

async function main(): Promise<void> {
  let nc;
  try {
    nc = await connect({ servers: args.values.servers!.split(","), name: "mig-bench-load" });
  } catch (err) {
    finish(failedResult("nats", args, `connect: ${describe(err)}`));
    return;
  }
  try {
    const probe = await nc.request(subject, body, { timeout: REQUEST_TIMEOUT_MS });
    const wrong = checkProbeReply(probe.string());
    if (wrong) {
      finish(failedResult("nats", args, wrong));
      return;
    }
  } catch (err) {
    finish(failedResult("nats", args, `probe: ${describe(err)}`));
    return;
  }
  const conn = nc;
  const outcome = await runClosedLoop({
    ...args,
    call: async () => {
      await conn.request(subject, body, { timeout: REQUEST_TIMEOUT_MS });
    },
  });
  await conn.close();
  finish(toResult("nats", args, outcome));
}

await main();
