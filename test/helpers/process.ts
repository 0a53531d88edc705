// Test helper: runs `mig` subcommands as real child processes and reads their pino log lines.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");

export interface MigProcess {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  dataDir: string;
  /** Resolves with the exit code when the process ends by itself or is stopped. */
  exited: Promise<number | null>;
  stderr(): string;
  /** Resolves with the first log line whose msg contains `text`. */
  waitForLog(text: string, limitMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Kills any nats-server that wrote a ports file into this data directory (see runtime/bus/nats-launcher.ts). */
function killEmbeddedServers(dataDir: string): void {
  let files: string[] = [];
  try {
    files = readdirSync(join(dataDir, "ports"));
  } catch {
    return;
  }
  for (const file of files) {
    const pid = Number(/^nats-server_(\d+)\.ports$/.exec(file)?.[1]);
    if (!pid) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

export function startMig(args: string[], env: Record<string, string> = {}): MigProcess {
  // A caller that names MIG_DATA_DIR (a restart on the same store) gets that directory back as `dataDir`.
  const dataDir = env.MIG_DATA_DIR ?? mkdtempSync(join(tmpdir(), "mig-proc-"));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "cli/main.ts"), ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      MIG_HTTP_ADDR: "127.0.0.1:0",
      MIG_GRPC_ADDR: "127.0.0.1:0",
      MIG_NATS_PORT: "0",
      MIG_NATS_MONITOR_PORT: "0",
      MIG_DATA_DIR: dataDir,
      MIG_LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { text: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) !== -1) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        const line = JSON.parse(text) as Record<string, unknown>;
        logs.push(line);
        for (const waiter of [...waiters]) {
          if (String(line.msg).includes(waiter.text)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      } catch {
        // Not a log line.
      }
    }
  });
  let stderr = "";
  child.stderr!.on("data", (c) => (stderr += c));
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  return {
    child,
    logs,
    dataDir,
    exited,
    stderr: () => stderr,
    waitForLog(text, limitMs = 20_000) {
      const found = logs.find((l) => String(l.msg).includes(text));
      if (found) return Promise.resolve(found);
      return new Promise((resolveLine, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no log line "${text}" within ${limitMs} ms; stderr: ${stderr}`)),
          limitMs,
        );
        void exited.then((code) =>
          reject(new Error(`process exited (${code}) before logging "${text}"; stderr: ${stderr}`)),
        );
        waiters.push({
          text,
          resolve: (line) => {
            clearTimeout(timer);
            resolveLine(line);
          },
        });
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null) child.kill(signal);
      const code = await exited;
      // A SIGKILLed runtime cannot stop its embedded nats-server: end it here so no test leaks one.
      killEmbeddedServers(dataDir);
      return code;
    },
  };
}

export interface StartedGateway {
  gateway: MigProcess;
  busUrl: string;
  httpUrl: string;
}

/** Runs `mig start` (embedded bus) and waits until its bus, HTTP and NATS bindings are up. */
export async function startGateway(env: Record<string, string> = {}): Promise<StartedGateway> {
  const gateway = startMig(["start"], env);
  try {
    const busUrl = String((await gateway.waitForLog("embedded nats-server listening")).url);
    const httpUrl = String((await gateway.waitForLog("HTTP binding listening")).url);
    await gateway.waitForLog("NATS binding listening");
    return { gateway, busUrl, httpUrl };
  } catch (err) {
    await gateway.stop("SIGKILL"); // its caller never got it to stop
    throw err;
  }
}
