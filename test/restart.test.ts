// A runtime killed with SIGKILL starts again on the same data directory and ports; a live one keeps its directory.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { NatsLauncher } from "../runtime/bus/nats-launcher.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const INVOKE = "/mig/v0.1/invoke/observatory.models.infer";
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mig-restart-"));
  cleanups.push(() => {
    // Whatever went wrong, no server is left on the store.
    for (const pid of serversOn(dir)) killQuietly(pid);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const { port } = server.address() as { port: number };
  await new Promise((res) => server.close(res));
  return port;
}

/** Running and not a zombie: a dead orphan nobody reaps keeps its /proc entry but holds no port. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]!);
  } catch {
    return false;
  }
}

/** The pids of nats-servers that wrote their ports file into this data directory. */
function serverPids(dataDir: string): number[] {
  let files: string[] = [];
  try {
    files = readdirSync(join(dataDir, "ports"));
  } catch {
    return [];
  }
  return files.map((f) => Number(/^nats-server_(\d+)\.ports$/.exec(f)?.[1])).filter((pid) => pid > 0);
}

/** Every live nats-server whose command line names this data directory's store. */
function serversOn(dataDir: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
        // argv[1] for a stand-in server that is a shell script (the never-ready one below).
        return (
          (argv[0]!.includes("nats-server") || argv[1]?.endsWith("/nats-server")) &&
          argv.includes(join(dataDir, "jetstream"))
        );
      } catch {
        return false;
      }
    })
    .map(Number)
    .filter(running);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

async function invokeOk(httpUrl: string, input: string): Promise<unknown> {
  const res = await fetch(`${httpUrl}${INVOKE}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { input } }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { payload: { echo: unknown } }).payload.echo;
}

/** Starts a gateway that the test ends itself (it may be SIGKILLed on purpose). */
async function gatewayOn(env: Record<string, string>) {
  const started = await startGateway(env);
  cleanups.push(() => started.gateway.stop("SIGKILL"));
  return started;
}

describe("restart after SIGKILL", () => {
  it("a runtime killed with SIGKILL leaves its nats-server behind, and the next start on the same directory and port ends it and serves", async () => {
    const dataDir = tempDataDir();
    const env = { MIG_DATA_DIR: dataDir, MIG_NATS_PORT: String(await freePort()) };
    const first = await gatewayOn(env);
    expect(await invokeOk(first.httpUrl, "before")).toEqual({ input: "before" });
    const [oldServer] = serverPids(dataDir);
    expect(oldServer).toBeGreaterThan(0);
    cleanups.push(() => killQuietly(oldServer!));

    first.gateway.child.kill("SIGKILL");
    await first.gateway.exited;
    // The server is the runtime's child in its own process group, so it outlives a SIGKILL of the runtime.
    expect(running(oldServer!)).toBe(true);

    const second = await gatewayOn(env);
    expect(second.busUrl).toBe(first.busUrl);
    expect(await invokeOk(second.httpUrl, "after")).toEqual({ input: "after" });
    expect(running(oldServer!)).toBe(false);
    expect(second.gateway.logs.some((l) => String(l.msg).includes("nats-server a previous run left behind"))).toBe(
      true,
    );
  }, 60_000);

  it("leaves alone an unrelated process whose pid is recorded in the data directory", async () => {
    const dataDir = tempDataDir();
    // A process that has reused the pids: a plain `sleep`, alive, recorded as both the runtime and its server.
    const stranger = spawn("sleep", ["60"], { stdio: "ignore" });
    cleanups.push(() => stranger.kill("SIGKILL"));
    const pid = stranger.pid!;
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const started = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(
      join(dataDir, "nats-server.pid"),
      JSON.stringify({
        runtime_pid: 999_999_999,
        runtime_started: "1",
        server_pid: pid,
        server_started: started,
        store_dir: join(dataDir, "jetstream"),
      }),
    );

    const { httpUrl, gateway } = await gatewayOn({ MIG_DATA_DIR: dataDir });
    expect(await invokeOk(httpUrl, "x")).toEqual({ input: "x" });
    expect(running(pid)).toBe(true);
    expect(gateway.logs.some((l) => String(l.msg).includes("is not that nats-server"))).toBe(true);
  }, 60_000);

  it("refuses a second runtime on a data directory that a live runtime uses, and does not touch the first", async () => {
    const dataDir = tempDataDir();
    const first = await gatewayOn({ MIG_DATA_DIR: dataDir });
    const [server] = serverPids(dataDir);

    const second: MigProcess = startMig(["start"], { MIG_DATA_DIR: dataDir });
    cleanups.push(() => second.stop("SIGKILL"));
    const outcome = await Promise.race([
      second.exited,
      second.waitForLog("embedded nats-server listening").then(() => "listening"),
    ]);
    expect(outcome).toBe(1);
    expect(second.stderr()).toContain(
      `data directory ${dataDir} is in use by mig process ${first.gateway.child.pid}; stop it or choose another MIG_DATA_DIR`,
    );
    // The first runtime and its server are untouched and still serve.
    expect(running(server!)).toBe(true);
    expect(await invokeOk(first.httpUrl, "still")).toEqual({ input: "still" });
  }, 60_000);
});

describe("readiness", () => {
  it("reports a start that exceeds MIG_NATS_START_TIMEOUT_MS with the setting to raise, and leaves no server behind", async () => {
    const dataDir = tempDataDir();
    // A stand-in for nats-server that never reports its ports: a start that cannot finish, however fast the machine.
    const fake = join(mkdtempSync(join(tmpdir(), "mig-fake-nats-")), "nats-server");
    writeFileSync(fake, "#!/bin/sh\nwhile :; do sleep 1; done\n", { mode: 0o755 });
    const gateway = startMig(["start"], {
      MIG_DATA_DIR: dataDir,
      MIG_NATS_START_TIMEOUT_MS: "1500",
      NATS_SERVER_BIN: fake,
    });
    cleanups.push(() => gateway.stop("SIGKILL"));
    const outcome = await Promise.race([
      gateway.exited,
      gateway.waitForLog("embedded nats-server listening").then(() => "listening"),
    ]);
    expect(outcome).toBe(1);
    expect(gateway.stderr()).toMatch(/nats-server was not ready after .* raise MIG_NATS_START_TIMEOUT_MS/);
    await waitFor("the unready nats-server to be gone", () => serversOn(dataDir).length === 0);
  }, 30_000);

  it("waits for a store of a thousand streams, logging progress, and comes up with every stream", async () => {
    const dataDir = tempDataDir();
    const streams = 1_000;
    const logger = pino({ level: "info" }, { write: () => undefined });
    const first = new NatsLauncher({ port: 0, monitorPort: 0, dataDir, logger });
    const { clientUrl } = await first.start();
    const nc = await connect({ servers: clientUrl });
    const jsm = await jetstreamManager(nc);
    for (let i = 0; i < streams; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => jsm.streams.add({ name: `S${i + j}`, subjects: [`store.${i + j}`] })),
      );
    }
    await nc.close();
    await first.stop();

    // Recovering 1,000 file streams takes far longer than the 20 ms between progress lines here.
    const lines: { msg: string; store_mib: number }[] = [];
    const recording = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const second = new NatsLauncher({ port: 0, monitorPort: 0, dataDir, logger: recording, progressEveryMs: 20 });
    cleanups.push(() => second.stop());
    const again = await second.start();
    const progress = lines.filter((l) => l.msg.startsWith("nats-server recovering JetStream:"));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[0]!.store_mib).toBeGreaterThan(0);

    const nc2 = await connect({ servers: again.clientUrl });
    cleanups.push(() => nc2.close());
    const info = await (await jetstreamManager(nc2)).getAccountInfo();
    expect(info.streams).toBe(streams);
  }, 60_000);
});
