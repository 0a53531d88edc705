// Composite raw baseline (run as its own process): a bare node:http server that forwards each POST body by raw
// NATS request/reply (the runtime's client library) to a subject, and answers with the reply's bytes. With the echo
// responder (baseline-nats-echo.ts) behind it, it is the shape of an HTTP invoke served by a worker, HTTP → NATS →
// responder → NATS → HTTP, with nothing of MIG on the way; prints {"ready":true,"url":...} once listening.
//
//   node --import tsx test/bench/baseline-http-nats.ts --servers 127.0.0.1:4222 --subject bench.echo [--port 0]
import http from "node:http";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { exitWithParent } from "./exit-with-parent.ts";

const { values } = parseArgs({
  options: { servers: { type: "string" }, subject: { type: "string" }, port: { type: "string", default: "0" } },
});
if (!values.servers || !values.subject) throw new Error("--servers and --subject are required");
const subject = values.subject;
const nc = await connect({ servers: values.servers.split(","), name: "mig-bench-http-nats" });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    nc.request(subject, Buffer.concat(chunks), { timeout: 30_000 }).then(
      (reply) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": reply.data.length });
        res.end(reply.data);
      },
      (err: Error) => {
        const text = JSON.stringify({ error: { code: "MIG_UNAVAILABLE", message: err.message } });
        res.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
      },
    );
  });
});

server.listen(Number(values.port), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ ready: true, url: `http://127.0.0.1:${port}` })}\n`);
});
exitWithParent();
process.on("SIGTERM", () => server.close(() => void nc.close().then(() => process.exit(0))));
