// HTTP load generator (run as its own process): N callers POST one JSON body in a closed loop
// over keep-alive connections and print throughput and latency percentiles as one JSON line.
//
//   node --import tsx test/bench/load-http.ts --url http://127.0.0.1:8080/x \
//     --body '{"a":1}' --concurrency 64 --warmup-ms 2000 --duration-ms 10000
import http from "node:http";
import {
  checkProbeReply,
  describe,
  failedResult,
  finish,
  parseLoaderArgs,
  runClosedLoop,
  toResult,
} from "./closed-loop.ts";

const args = parseLoaderArgs(["url"]);
const url = new URL(args.values.url!);
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
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
      );
    });
    req.on("error", reject);
    req.on("socket", () => {
      if (!req.reusedSocket) connectionsOpened++;
    });
    req.end(body);
  });
}

async function call(): Promise<void> {
  const { status } = await post(false);
  if (status !== 200) throw new Error(`HTTP ${status}`);
}

async function main(): Promise<void> {
  try {
    const probe = await post(true);
    if (probe.status !== 200) {
      finish(failedResult("http", args, `probe: HTTP ${probe.status}: ${probe.text.slice(0, 300)}`));
      return;
    }
    const wrong = checkProbeReply(probe.text);
    if (wrong) {
      finish(failedResult("http", args, wrong));
      return;
    }
  } catch (err) {
    finish(failedResult("http", args, `probe: ${describe(err)}`));
    return;
  }
  const outcome = await runClosedLoop({ ...args, call });
  agent.destroy();
  finish({ ...toResult("http", args, outcome), connections_opened: connectionsOpened });
}

await main();
