// HTTP load generator (run as its own process): N callers POST one JSON body in a closed loop
// over keep-alive connections and print throughput and latency percentiles as JSON lines.
//
//   one run:  node --import tsx test/bench/load-http.ts --url http://127.0.0.1:8080/x \
//               --body '{"a":1}' --concurrency 64 --warmup-ms 2000 --duration-ms 10000
//   on command: ... --serve, then one {"warmup_ms":…,"duration_ms":…} line per run on stdin
import http from "node:http";
import { checkProbeReply, parseLoaderArgs, runLoader } from "./closed-loop.ts";

const args = parseLoaderArgs(["url"]);
const url = new URL(String(args.values.url));
const body = Buffer.from(args.body);
const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });
const requestOptions: http.RequestOptions = {
  agent,
  method: "POST",
  hostname: url.hostname,
  port: url.port,
  path: url.pathname + url.search,
  headers: { "content-type": "application/json", "content-length": body.length },
};

/** Requests that had to open a new connection rather than reuse a kept-alive one. */
let connectionsOpened = 0;

/** One POST; resolves with the status and, when asked, the body text. */
function post(keepBody: boolean): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(requestOptions, (res) => {
      const chunks: Buffer[] = [];
      if (keepBody) res.on("data", (chunk: Buffer) => chunks.push(chunk));
      else res.resume();
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.on("socket", () => {
      if (!req.reusedSocket) connectionsOpened++;
    });
    req.end(body);
  });
}

await runLoader(args, {
  tool: "http",
  async probe() {
    const { status, text } = await post(true);
    if (status !== 200) return `probe: HTTP ${status}: ${text.slice(0, 300)}`;
    return checkProbeReply(text);
  },
  async call() {
    const { status } = await post(false);
    if (status !== 200) throw new Error(`HTTP ${status}`);
  },
  extra() {
    const opened = connectionsOpened;
    connectionsOpened = 0;
    return { connections_opened: opened };
  },
  async close() {
    agent.destroy();
  },
});
