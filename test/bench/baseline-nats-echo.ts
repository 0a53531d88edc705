// Raw NATS baseline (run as its own process): a plain responder on one subject that parses
// each JSON request and replies with an InvokeResponse-shaped JSON body; prints
// {"ready":true} once its subscription is registered with the server.
//
//   node --import tsx test/bench/baseline-nats-echo.ts --servers 127.0.0.1:4222 --subject bench.echo

import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { exitWithParent } from "./exit-with-parent.ts";
import { invalidRequestReply, invokeReply } from "./invoke-reply.ts";

const { values } = parseArgs({
  options: { servers: { type: "string" }, subject: { type: "string" } },
});
if (!values.servers || !values.subject) {
  throw new Error("--servers and --subject are required");
}
const subject = values.subject;

const nc = await connect({ servers: values.servers.split(","), name: "mig-bench-echo" });
nc.subscribe(subject, {
  callback: (err, msg) => {
    if (err) return;
    let reply: string;
    try {
      reply = invokeReply(msg.json(), "");
    } catch {
      reply = invalidRequestReply();
    }
    msg.respond(reply);
  },
});
await nc.flush();
process.stdout.write(`${JSON.stringify({ ready: true, subject })}\n`);
exitWithParent();
process.on("SIGTERM", () => {
  void nc.close().then(() => process.exit(0));
});
