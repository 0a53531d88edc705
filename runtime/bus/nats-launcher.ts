// The embedded bus: runs nats-server as a supervised child process, restarts it with backoff, stops it cleanly.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../base/logger.ts";

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
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
  /**
   * How long one start may take, from spawning the server to /healthz answering OK. A large JetStream
   * store is recovered before the server listens, so this grows with the store (MIG_NATS_START_TIMEOUT_MS).
   */
  startTimeoutMs?: number;
  /** How often a slow start logs its progress. */
  progressEveryMs?: number;
}

export const DEFAULT_START_TIMEOUT_MS = 120_000;
const DEFAULT_PROGRESS_EVERY_MS = 5_000;
/** The file in the data directory that names the runtime using it and the nats-server it started. */
export const OWNER_FILE = "nats-server.pid";

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
  throw new Error(
    "nats-server was not found: install it (`apt-get install -y nats-server`) or set NATS_SERVER_BIN, or set MIG_NATS_URL to use an existing server",
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Who uses a data directory, written there when a runtime claims it and again for every server it
 * starts. A pid alone is not an identity (pids are reused), so each comes with its start time
 * (field 22 of /proc/<pid>/stat, fixed for the life of a process).
 */
interface OwnerRecord {
  runtime_pid: number;
  runtime_started: string | undefined;
  server_pid: number | undefined;
  server_started: string | undefined;
  store_dir: string;
}

interface ProcessInfo {
  running: boolean;
  started: string | undefined;
  argv: string[];
}

const HAS_PROC = existsSync("/proc/self/stat");

/** What /proc says about a pid; undefined when there is no such process. */
function processInfo(pid: number): ProcessInfo | undefined {
  if (!HAS_PROC) {
    // Without /proc (macOS) only liveness can be checked; identity cannot, so nothing is killed on it.
    try {
      process.kill(pid, 0);
      return { running: true, started: undefined, argv: [] };
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EPERM"
        ? { running: true, started: undefined, argv: [] }
        : undefined;
    }
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name in parentheses may hold spaces; the fields after it are plain.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    // Gone meanwhile, or not ours to read.
  }
  // A zombie (a dead child nobody reaped: no init reaps in some containers) holds no port and no file.
  return { running: fields[0] !== "Z" && fields[0] !== "X", started: fields[19], argv };
}

const SELF_STARTED = processInfo(process.pid)?.started;

/** Data directories (their owner files) claimed by a launcher of this process that has not stopped. */
const claimedHere = new Set<string>();

/** Total size of the files under `dir`, for progress lines; bounded so a huge store costs little. */
function storeBytes(dir: string): number {
  let total = 0;
  let visited = 0;
  const pending = [dir];
  while (pending.length > 0 && visited < 200_000) {
    const current = pending.pop()!;
    let entries: string[];
    try {
      entries = readdirSync(current);
    } catch {
      continue;
    }
    for (const entry of entries) {
      visited++;
      try {
        const stat = lstatSync(join(current, entry));
        if (stat.isDirectory()) pending.push(join(current, entry));
        else total += stat.size;
      } catch {
        // Removed while we walked.
      }
    }
  }
  return total;
}

/**
 * Supervises one nats-server child. Emits "restarted" after a crash recovery and "ready" on every
 * start. The first start fixes the ports, so clients reconnect to the same address after a crash.
 *
 * A runtime killed with SIGKILL cannot stop its server, which then holds the port and the store. The
 * launcher does not try to make the server die with it (a watcher process beside the server could be
 * killed the same way, so a start would have to clean up anyway); instead each start cleans up: the
 * data directory records this runtime and its server (OWNER_FILE), and the next start on it stops a
 * recorded server whose runtime is gone, after checking by start time and command line that the pid
 * still names that server. A live runtime's directory is refused, never taken over.
 */
export class NatsLauncher extends EventEmitter {
  private child: ChildProcess | undefined;
  private stopping = false;
  private everReady = false;
  private restarting = false;
  private restarts = 0;
  private ports: { client: number; monitor: number } | undefined;
  private readonly binary: string;
  private readonly dataDir: string;
  private readonly storeDir: string;
  private readonly portsDir: string;
  private readonly ownerFile: string;
  private ownsDataDir = false;
  private readonly killOnExit = () => this.child?.kill("SIGKILL");

  constructor(private readonly options: LauncherOptions) {
    super();
    this.binary = findNatsServerBinary();
    this.dataDir = resolve(options.dataDir);
    this.storeDir = join(this.dataDir, "jetstream");
    this.portsDir = join(this.dataDir, "ports");
    this.ownerFile = join(this.dataDir, OWNER_FILE);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get restartCount(): number {
    return this.restarts;
  }

  /**
   * Takes the data directory for this runtime (see claimDataDir). start() does it too; call it first
   * when something else is written into the data directory before the server starts.
   */
  async claim(): Promise<void> {
    if (this.ownsDataDir) return;
    mkdirSync(this.dataDir, { recursive: true });
    await this.claimDataDir();
  }

  async start(): Promise<LauncherPorts> {
    await this.claim();
    mkdirSync(this.portsDir, { recursive: true });
    process.on("exit", this.killOnExit);
    try {
      return await this.launch();
    } catch (err) {
      process.off("exit", this.killOnExit);
      this.releaseDataDir();
      throw err;
    }
  }

  /**
   * Makes this runtime the user of the data directory: refuses it while another live runtime uses it,
   * and ends the server a dead one left behind. The owner file is created exclusively, so of two
   * runtimes starting at once on one directory, one wins and the other is refused.
   */
  private async claimDataDir(): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const text = this.readOwnerFile();
      if (text !== undefined) {
        const record = parseOwnerRecord(text);
        if (record) {
          const inUseBy = this.liveRuntime(record);
          if (inUseBy !== undefined) {
            throw new Error(
              `data directory ${this.options.dataDir} is in use by mig process ${inUseBy}; stop it or choose another MIG_DATA_DIR`,
            );
          }
          if (record.server_pid) await this.endStaleServer(record.server_pid, record.server_started, "recorded");
        }
        // Remove the stale record only if it is still the one judged stale (another start may have replaced it).
        if (this.readOwnerFile() === text) rmSync(this.ownerFile, { force: true });
      }
      // A server with no record: one whose runtime died before writing it, or from an older launcher.
      for (const pid of this.serversFromPortsFiles())
        await this.endStaleServer(pid, undefined, "found in the ports directory");
      try {
        writeFileSync(this.ownerFile, this.ownerText(undefined), { flag: "wx" });
        this.ownsDataDir = true;
        claimedHere.add(this.ownerFile);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        // Another start created it first: look again (it is then live and refused).
      }
    }
    throw new Error(
      `could not claim data directory ${this.options.dataDir}: ${this.ownerFile} keeps changing; is another mig process starting on it?`,
    );
  }

  /** The pid of the live runtime that uses the directory per `record`, if any. */
  private liveRuntime(record: OwnerRecord): number | undefined {
    if (record.runtime_pid === process.pid && record.runtime_started === SELF_STARTED) {
      // This very process: in use if one of its launchers still holds it; otherwise left by one that never stopped.
      return claimedHere.has(this.ownerFile) ? process.pid : undefined;
    }
    const info = processInfo(record.runtime_pid);
    if (!info?.running) return undefined;
    // A pid reused by a later process is not that runtime (unknowable without /proc: assume it is).
    if (info.started !== undefined && record.runtime_started !== undefined && info.started !== record.runtime_started)
      return undefined;
    return record.runtime_pid;
  }

  /** Whether `info` is a nats-server on this data directory's store (started at `started`, when known). */
  private isOurServer(info: ProcessInfo, started: string | undefined): boolean {
    if (started !== undefined && info.started !== started) return false;
    return basename(info.argv[0] ?? "").includes("nats-server") && info.argv.includes(this.storeDir);
  }

  private serversFromPortsFiles(): number[] {
    let files: string[] = [];
    try {
      files = readdirSync(this.portsDir);
    } catch {
      return [];
    }
    return files.map((file) => Number(/^nats-server_(\d+)\.ports$/.exec(file)?.[1])).filter((pid) => pid > 0);
  }

  /** Stops a server a dead runtime left on this store: SIGTERM (it flushes JetStream), SIGKILL after 10 s. */
  private async endStaleServer(pid: number, started: string | undefined, how: string): Promise<void> {
    const log = this.options.logger;
    const info = processInfo(pid);
    if (!info?.running) return;
    if (!this.isOurServer(info, started)) {
      log.info(
        { pid, data_dir: this.dataDir },
        `pid ${pid} ${how} in the data directory is not that nats-server any more; leaving it alone`,
      );
      return;
    }
    log.warn(
      { pid, data_dir: this.dataDir },
      `stopping the nats-server a previous run left behind (pid ${pid}, ${how})`,
    );
    const gone = () => !processInfo(pid)?.running;
    const signal = (name: NodeJS.Signals) => {
      try {
        process.kill(pid, name);
      } catch {
        // Already gone.
      }
    };
    signal("SIGTERM");
    for (let waited = 0; waited < 10_000 && !gone(); waited += 50) await sleep(50);
    if (!gone()) signal("SIGKILL");
    for (let waited = 0; waited < 5_000 && !gone(); waited += 50) await sleep(50);
    if (!gone())
      throw new Error(
        `the nats-server a previous run left on ${this.dataDir} (pid ${pid}) did not exit; stop it and start again`,
      );
  }

  private readOwnerFile(): string | undefined {
    try {
      return readFileSync(this.ownerFile, "utf8");
    } catch {
      return undefined;
    }
  }

  private ownerText(server: ChildProcess | undefined): string {
    const record: OwnerRecord = {
      runtime_pid: process.pid,
      runtime_started: SELF_STARTED,
      server_pid: server?.pid,
      server_started: server?.pid ? processInfo(server.pid)?.started : undefined,
      store_dir: this.storeDir,
    };
    return `${JSON.stringify(record)}\n`;
  }

  private releaseDataDir(): void {
    if (!this.ownsDataDir) return;
    this.ownsDataDir = false;
    claimedHere.delete(this.ownerFile);
    const record = parseOwnerRecord(this.readOwnerFile() ?? "");
    if (record?.runtime_pid === process.pid) rmSync(this.ownerFile, { force: true });
  }

  private async launch(): Promise<LauncherPorts> {
    rmSync(this.portsDir, { recursive: true, force: true });
    mkdirSync(this.portsDir, { recursive: true });
    const client = this.ports?.client ?? (this.options.port === 0 ? -1 : this.options.port);
    const monitor = this.ports?.monitor ?? (this.options.monitorPort === 0 ? -1 : this.options.monitorPort);
    const args = [
      "-c",
      this.options.confFile ?? DEFAULT_CONF,
      "-p",
      String(client),
      "-m",
      String(monitor),
      "-sd",
      this.storeDir,
      "-ports_file_dir",
      this.portsDir,
      ...(this.options.extraArgs ?? []),
    ];
    // Its own process group, which only this runtime signals: a Ctrl-C in the terminal reaches only the
    // runtime, which then stops the server itself; otherwise the server would exit first and be
    // "revived" during shutdown.
    const child = spawn(this.binary, args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
    this.child = child;
    // Recorded at once (spawn returns after exec), so a runtime killed from here on leaves a server the next start finds.
    if (child.pid) writeFileSync(this.ownerFile, this.ownerText(child));
    const log = this.options.logger;
    let tail = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      if (/\[(ERR|FTL)\]/.test(chunk)) log.warn({ nats: chunk.trim() }, "nats-server reported an error");
    });
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    void exited.then((code) => (exitCode = code));
    child.once("exit", (code, signal) => this.onExit(child, code, signal));
    const lastLines = () => tail.trim().split("\n").slice(-3).join(" | ");

    // No fixed budget: recovering a JetStream store takes time in proportion to its streams, and the
    // server listens (writes its ports file) only after that. Wait while the server lives, saying so.
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const everyMs = this.options.progressEveryMs ?? DEFAULT_PROGRESS_EVERY_MS;
    const startedAt = Date.now();
    let nextReport = startedAt + everyMs;
    let storeMiB: number | undefined;
    const waiting = async (what: string): Promise<void> => {
      if (exitCode !== undefined)
        throw new Error(`nats-server exited with code ${exitCode} before it was ready: ${lastLines()}`);
      const now = Date.now();
      if (now - startedAt >= timeoutMs) {
        await this.terminate(child);
        throw new Error(
          `nats-server was not ready after ${Math.round((now - startedAt) / 1000)} s (still waiting for ${what}); ` +
            `a large JetStream store needs longer: raise MIG_NATS_START_TIMEOUT_MS (now ${timeoutMs} ms). Last lines: ${lastLines()}`,
        );
      }
      if (now >= nextReport) {
        nextReport = now + everyMs;
        storeMiB ??= Math.round((storeBytes(this.storeDir) / (1024 * 1024)) * 10) / 10;
        const seconds = Math.round((now - startedAt) / 1000);
        log.info(
          { seconds, store_mib: storeMiB, waiting_for: what, pid: child.pid },
          `nats-server recovering JetStream: ${seconds} s so far, store ${storeMiB} MiB`,
        );
      }
      await Promise.race([sleep(25), exited]);
    };

    const ports = await this.waitForPorts(child.pid!, waiting);
    await this.waitHealthy(ports.monitorUrl, waiting);
    this.everReady = true;
    this.emit("ready", ports);
    return ports;
  }

  private async waitForPorts(pid: number, waiting: (what: string) => Promise<void>): Promise<LauncherPorts> {
    const file = join(this.portsDir, `nats-server_${pid}.ports`);
    for (;;) {
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
      await waiting(`its ports file in ${this.portsDir}`);
    }
  }

  /** /healthz answers 503 while JetStream is not ready, 200 once it is. */
  private async waitHealthy(monitorUrl: string, waiting: (what: string) => Promise<void>): Promise<void> {
    for (;;) {
      try {
        const res = await fetch(`${monitorUrl}/healthz`, { signal: AbortSignal.timeout(2_000) });
        await res.body?.cancel();
        if (res.ok) return;
      } catch {
        // Not listening yet, or too busy to answer in time.
      }
      await waiting(`${monitorUrl}/healthz to answer OK`);
    }
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
        this.options.logger.warn(
          { err: (err as Error).message, next_attempt_ms: delay * 2 },
          "embedded nats-server restart failed",
        );
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  /** Sends SIGTERM (lame duck and flush), then SIGKILL after 5 s, and waits for the exit. */
  private async terminate(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((res) => child.once("exit", () => res()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops the server and gives the data directory back. */
  async stop(): Promise<void> {
    this.stopping = true;
    process.off("exit", this.killOnExit);
    const child = this.child;
    if (child) await this.terminate(child);
    this.releaseDataDir();
  }
}

function parseOwnerRecord(text: string): OwnerRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<OwnerRecord>;
    if (typeof value !== "object" || value === null || !Number.isInteger(value.runtime_pid)) return undefined;
    return {
      runtime_pid: value.runtime_pid!,
      runtime_started: typeof value.runtime_started === "string" ? value.runtime_started : undefined,
      server_pid: Number.isInteger(value.server_pid) && value.server_pid! > 0 ? value.server_pid : undefined,
      server_started: typeof value.server_started === "string" ? value.server_started : undefined,
      store_dir: typeof value.store_dir === "string" ? value.store_dir : "",
    };
  } catch {
    return undefined;
  }
}
