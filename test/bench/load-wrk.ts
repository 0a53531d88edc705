// HTTP load generator built on wrk (Debian's `wrk` package), run as its own process with the same arguments and
// serve-mode protocol as load-http.ts: N connections POST one JSON body in a closed loop over keep-alive, and each
// run prints one LoadResult line. wrk's ceiling on this machine is several times any Node server's rate, so an HTTP
// row driven by it measures the server, not its loader (docs/BENCHMARKS.md, "Loaders").
//
//   on command: node --import tsx test/bench/load-wrk.ts --url http://127.0.0.1:8080/x --body '{"a":1}' \
//                 --concurrency 64 --serve, then one {"warmup_ms":…,"duration_ms":…} line per run on stdin
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { checkProbeReply, parseLoaderArgs } from "./closed-loop.ts";
import type { LoadResult } from "./types.ts";

const args = parseLoaderArgs(["url"]);
const url = String(args.values.url);
const WRK = process.env.WRK_BIN ?? "wrk";

// wrk's script: the request, and its summary as one JSON line (latencies in µs, non-2xx and socket errors).
const dir = mkdtempSync(join(tmpdir(), "mig-wrk-"));
const script = join(dir, "post.lua");
writeFileSync(
  script,
  `wrk.method = "POST"
wrk.body = ${JSON.stringify(args.body)}
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50":%d,"p99":%d,"p999":%d,"mean":%f,"max":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
`,
);

interface WrkSummary {
  requests: number;
  duration_us: number;
  non2xx: number;
  socket_errors: number;
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
}

/**
 * One wrk run of about `ms` milliseconds, in whole seconds and at least one (wrk takes no fractions); one thread, as
 * the bare servers compared are single-threaded too.
 */
function wrk(ms: number): Promise<WrkSummary> {
  const seconds = `${Math.max(1, Math.round(ms / 1000))}s`;
  const wrkArgs = ["-t1", `-c${args.concurrency}`, `-d${seconds}`, "--timeout", "10s", "-s", script, url];
  return new Promise((resolve, reject) => {
    execFile(WRK, wrkArgs, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${WRK} failed: ${err.message} ${stderr}`));
      const line = stdout.split("\n").find((l) => l.startsWith('{"requests"'));
      if (!line) return reject(new Error(`${WRK} printed no summary: ${stdout.slice(0, 300)}`));
      resolve(JSON.parse(line) as WrkSummary);
    });
  });
}

async function probe(): Promise<string | undefined> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: args.body });
  const text = await res.text();
  if (res.status !== 200) return `probe: HTTP ${res.status}: ${text.slice(0, 300)}`;
  return checkProbeReply(text);
}

async function run(warmupMs: number, durationMs: number): Promise<LoadResult> {
  const leadIn = warmupMs > 0 ? await wrk(warmupMs) : undefined;
  const s = await wrk(durationMs);
  const ms = (us: number) => Math.round(us) / 1000;
  const errors = s.non2xx + s.socket_errors;
  return {
    tool: "http",
    concurrency: args.concurrency,
    warmup_s: warmupMs / 1000,
    duration_s: s.duration_us / 1e6,
    requests: s.requests - s.non2xx,
    ...(leadIn ? { lead_in_requests: leadIn.requests } : {}),
    errors,
    throughput_rps: Math.round(((s.requests - s.non2xx) / (s.duration_us / 1e6)) * 10) / 10,
    latency_ms: { p50: ms(s.p50), p99: ms(s.p99), p999: ms(s.p999), mean: ms(s.mean), max: ms(s.max) },
    ...(errors > 0 ? { first_error: `${s.non2xx} answers not 2xx, ${s.socket_errors} socket errors` } : {}),
  };
}

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
try {
  const problem = await probe().catch((err: unknown) => `probe: ${(err as Error).message}`);
  if (problem) {
    print({ error: problem });
    process.exit(2);
  }
  if (!args.serve) {
    print(await run(args.warmupMs, args.durationMs));
  } else {
    print({ ready: true });
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      const command = JSON.parse(line) as { warmup_ms: number; duration_ms: number };
      print(await run(command.warmup_ms, command.duration_ms).catch((err: Error) => ({ error: err.message })));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
