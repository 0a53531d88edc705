// Restarts `mig start` after SIGKILL again and again on one data directory and fixed ports, and counts
// how many starts served an invocation. Run: node --import tsx test/bench/restart-loop.ts --tries 20
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = resolve(import.meta.dirname, "../..");
const { values } = parseArgs({
  options: {
    tries: { type: "string", default: "20" },
    "data-dir": { type: "string" },
    "ready-limit-ms": { type: "string", default: "60000" },
  },
  strict: true,
});
const tries = Number(values.tries);
const readyLimitMs = Number(values["ready-limit-ms"]);
const dataDir = values["data-dir"] ?? mkdtempSync(join(tmpdir(), "mig-restart-loop-"));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const { port } = server.address() as { port: number };
  await new Promise((res) => server.close(res));
  return port;
}

const natsPort = await freePort();
const monitorPort = await freePort();
const httpPort = await freePort();
const httpUrl = `http://127.0.0.1:${httpPort}`;
const env = {
  ...process.env,
  MIG_DATA_DIR: dataDir,
  MIG_NATS_PORT: String(natsPort),
  MIG_NATS_MONITOR_PORT: String(monitorPort),
  MIG_HTTP_ADDR: `127.0.0.1:${httpPort}`,
  MIG_GRPC_ADDR: "127.0.0.1:0",
  MIG_LOG_LEVEL: "warn",
};

async function invokeOnce(): Promise<boolean> {
  try {
    const res = await fetch(`${httpUrl}/mig/v0.1/invoke/observatory.models.infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "ping" } }),
      signal: AbortSignal.timeout(5_000),
    });
    await res.text();
    return res.status === 200;
  } catch {
    return false;
  }
}

interface TryResult {
  ok: boolean;
  readyMs: number;
  reason?: string;
}

async function oneTry(): Promise<TryResult> {
  const began = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "cli/main.ts"), "start"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr = (stderr + chunk).slice(-2_000)));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((res) => child.once("exit", (code) => ((exitCode = code), res())));
  let result: TryResult | undefined;
  while (!result) {
    if (await invokeOnce()) result = { ok: true, readyMs: Date.now() - began };
    else if (exitCode !== undefined)
      result = {
        ok: false,
        readyMs: Date.now() - began,
        reason: `exited with ${exitCode}: ${stderr.trim().split("\n").slice(-2).join(" | ")}`,
      };
    else if (Date.now() - began > readyLimitMs)
      result = { ok: false, readyMs: Date.now() - began, reason: `no successful invoke within ${readyLimitMs} ms` };
    else await new Promise((r) => setTimeout(r, 50));
  }
  // The crash under test: the runtime dies at once, its nats-server is left to the next start.
  child.kill("SIGKILL");
  await exited;
  return result;
}

/** The nats-servers still running on the store after the last try (the last runtime was killed too). */
function leftServers(): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const running = !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]!);
        return running && argv[0]!.includes("nats-server") && argv.includes(join(dataDir, "jetstream"));
      } catch {
        return false;
      }
    })
    .map(Number);
}

const started = Date.now();
const results: TryResult[] = [];
for (let i = 1; i <= tries; i++) {
  const result = await oneTry();
  results.push(result);
  console.log(
    `try ${i}/${tries}: ${result.ok ? `served after ${result.readyMs} ms` : `FAILED after ${result.readyMs} ms: ${result.reason}`}`,
  );
}
const totalMs = Date.now() - started;
const left = leftServers();
for (const pid of left) process.kill(pid, "SIGKILL");
if (!values["data-dir"]) rmSync(dataDir, { recursive: true, force: true });

const ok = results.filter((r) => r.ok);
const ready = ok.map((r) => r.readyMs).sort((a, b) => a - b);
console.log(
  JSON.stringify({
    tries,
    succeeded: ok.length,
    failed: tries - ok.length,
    total_s: Math.round(totalMs / 100) / 10,
    ready_ms_median: ready[Math.floor(ready.length / 2)] ?? null,
    ready_ms_max: ready.at(-1) ?? null,
    servers_left_after_last_kill: left.length,
  }),
);
process.exit(ok.length === tries ? 0 : 1);
