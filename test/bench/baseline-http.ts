// Raw HTTP baseline (run as its own process): a bare node:http server that parses each JSON
// body and answers an InvokeResponse-shaped JSON reply; prints {"ready":true,"url":...} once
// listening.
//
//   node --import tsx test/bench/baseline-http.ts [--port 0]
import http from "node:http";
import { parseArgs } from "node:util";
import { exitWithParent } from "./exit-with-parent.ts";
import { invalidRequestReply, invokeReply } from "./invoke-reply.ts";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });
const INVOKE_PREFIX = "/mig/v0.1/invoke/";

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    let status = 200;
    let reply: string;
    try {
      const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const path = req.url ?? "";
      const capability = path.startsWith(INVOKE_PREFIX) ? path.slice(INVOKE_PREFIX.length) : "";
      reply = invokeReply(request, capability);
    } catch {
      status = 400;
      reply = invalidRequestReply();
    }
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(reply),
    });
    res.end(reply);
  });
});

server.listen(Number(values.port), "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ ready: true, url: `http://127.0.0.1:${port}` })}\n`);
});
exitWithParent();
process.on("SIGTERM", () => server.close(() => process.exit(0)));
