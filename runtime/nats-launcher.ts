// The embedded bus: runs nats-server as a supervised child process, restarts it with backoff, stops it cleanly.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { EventEmitter } from "node:events";
import type { Logger } from "./logger.ts";

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_CONF = join(PROJECT_ROOT, "nats-server.conf");

export interface LauncherOptions {
  /** Client port; 0 asks nats-server for a free one (kept across restarts). */
  port: number;
  /** Monitoring port; 0 asks for a free one. */
  monitorPort: number;
  dataDir: string;
  confFile?: string;
  logger: Logger;
  /** Extra nats-server arguments, e.g. for tests. */
  extraArgs?: string[];
}

export interface LauncherPorts {
  clientUrl: string;
  monitorUrl: string;
}

export function findNatsServerBinary(): string {
  const explicit = process.env.NATS_SERVER_BIN;
  if (explicit) return explicit;
  const found = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  for (const candidate of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error("nats-server was not found: install it (`apt-get install -y nats-server`) or set NATS_SERVER_BIN, or set MIG_NATS_URL to use an existing server");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Supervises one nats-server child. Emits "restarted" after a crash recovery and "ready" on every
 * start. The first start fixes the ports, so clients reconnect to the same address after a crash.
 */
export class NatsLauncher extends EventEmitter {
  private child: ChildProcess | undefined;
  private stopping = false;
  private everReady = false;
  private restarting = false;
  private restarts = 0;
  private ports: { client: number; monitor: number } | undefined;
  private readonly binary: string;
  private readonly portsDir: string;
  private readonly killOnExit = () => this.child?.kill("SIGKILL");

  constructor(private readonly options: LauncherOptions) {
    super();
    this.binary = findNatsServerBinary();
    this.portsDir = join(resolve(options.dataDir), "ports");
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get restartCount(): number {
    return this.restarts;
  }

  async start(): Promise<LauncherPorts> {
    mkdirSync(this.portsDir, { recursive: true });
    process.on("exit", this.killOnExit);
    return this.launch();
  }

  private async launch(): Promise<LauncherPorts> {
    rmSync(this.portsDir, { recursive: true, force: true });
    mkdirSync(this.portsDir, { recursive: true });
    const client = this.ports?.client ?? (this.options.port === 0 ? -1 : this.options.port);
    const monitor = this.ports?.monitor ?? (this.options.monitorPort === 0 ? -1 : this.options.monitorPort);
    const args = [
      "-c", this.options.confFile ?? DEFAULT_CONF,
      "-p", String(client),
      "-m", String(monitor),
      "-sd", join(resolve(this.options.dataDir), "jetstream"),
      "-ports_file_dir", this.portsDir,
      ...(this.options.extraArgs ?? []),
    ];
    // Its own process group: a Ctrl-C in the terminal reaches only the runtime, which then stops the
    // server itself; otherwise the server would exit first and be "revived" during shutdown.
    const child = spawn(this.binary, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
    this.child = child;
    const log = this.options.logger;
    let tail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      if (/\[(ERR|FTL)\]/.test(chunk)) log.warn({ nats: chunk.trim() }, "nats-server reported an error");
    });
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    child.once("exit", (code, signal) => this.onExit(child, code, signal));

    const ports = await Promise.race([
      this.waitForPorts(child.pid!),
      exited.then((code) => {
        throw new Error(`nats-server exited with code ${code} before it was ready: ${tail.trim().split("\n").slice(-3).join(" | ")}`);
      }),
    ]);
    await this.waitHealthy(ports.monitorUrl);
    this.everReady = true;
    this.emit("ready", ports);
    return ports;
  }

  private async waitForPorts(pid: number): Promise<LauncherPorts> {
    const file = join(this.portsDir, `nats-server_${pid}.ports`);
    for (let attempt = 0; attempt < 300; attempt++) {
      if (existsSync(file)) {
        try {
          const parsed = JSON.parse(readFileSync(file, "utf8")) as { nats?: string[]; monitoring?: string[] };
          const clientUrl = parsed.nats?.[0];
          const monitorUrl = parsed.monitoring?.[0];
          if (clientUrl && monitorUrl) {
            this.ports = { client: Number(new URL(clientUrl).port), monitor: Number(new URL(monitorUrl).port) };
            return { clientUrl, monitorUrl };
          }
        } catch {
          // The file may be half written; read it again on the next turn.
        }
      }
      await sleep(20);
    }
    throw new Error(`nats-server did not report its ports within 6 s (looked in ${this.portsDir}: ${readdirSync(this.portsDir).join(", ") || "empty"})`);
  }

  private async waitHealthy(monitorUrl: string): Promise<void> {
    for (let attempt = 0; attempt < 250; attempt++) {
      try {
        const res = await fetch(`${monitorUrl}/healthz`);
        if (res.ok) return;
      } catch {
        // Not listening yet.
      }
      await sleep(20);
    }
    throw new Error("nats-server did not become healthy (JetStream ready) within 5 s");
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    // A failed first start is reported by start() itself; only a running server is revived.
    if (this.stopping || !this.everReady || this.restarting) return;
    this.options.logger.warn({ code, signal }, "embedded nats-server died; restarting it");
    void this.restartWithBackoff();
  }

  private async restartWithBackoff(): Promise<void> {
    this.restarting = true;
    let delay = 100;
    while (!this.stopping) {
      await sleep(delay);
      if (this.stopping) return;
      try {
        this.restarts++;
        const ports = await this.launch();
        this.options.logger.info({ url: ports.clientUrl, restarts: this.restarts }, "embedded nats-server restarted");
        this.restarting = false;
        this.emit("restarted", ports);
        return;
      } catch (err) {
        this.options.logger.warn({ err: (err as Error).message, next_attempt_ms: delay * 2 }, "embedded nats-server restart failed");
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** Stops the server with SIGTERM (lame duck and flush), falling back to SIGKILL after 5 s. */
  async stop(): Promise<void> {
    this.stopping = true;
    process.off("exit", this.killOnExit);
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((res) => child.once("exit", () => res()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
