// An OTLP/HTTP receiver that takes every export and keeps nothing: the collector of the tracing benchmark's
// "tracing on" side, in a process of its own so that its work is not the loader's. Prints one ready line.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

let spansBytes = 0;
const server = createServer((req, res) => {
  req.on("data", (chunk: Buffer) => (spansBytes += chunk.length));
  req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
});
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ ready: true, url: `http://127.0.0.1:${port}` })}\n`);
});
process.on("SIGTERM", () => {
  process.stderr.write(`otlp-sink received ${spansBytes} bytes\n`);
  process.exit(0);
});
