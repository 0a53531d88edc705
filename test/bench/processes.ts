// Child processes of a benchmark run: spawned in their own process group, their output kept
// for error messages, and every one of them (with its descendants) stopped at the end.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const TAIL_CHARS = 4_000;
const live = new Set<Child>();
/** Set once the run is stopping: no new child may start after the last one was stopped. */
let closing = false;

export class Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves when the process has exited, with its code or signal. */
  readonly exited: Promise<string>;
  exitDescription: string | undefined;
  private stdoutTail = "";
  private stderrTail = "";
  private partialLine = "";
  private readonly lineListeners = new Set<(line: string) => void>();

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    options: { cwd: string; env?: NodeJS.ProcessEnv },
  ) {
    if (closing) throw new Error(`not starting ${name}: the benchmark is stopping`);
    this.proc = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true, // own process group, so stop() reaches grandchildren too
      stdio: ["pipe", "pipe", "pipe"], // stdin stays open: children may exit when it closes
    });
    this.exited = new Promise((resolve) => {
      this.proc.on("error", (err) => {
        this.exitDescription = `could not start: ${err.message}`;
        resolve(this.exitDescription);
      });
      this.proc.on("exit", (code, signal) => {
        this.exitDescription = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve(this.exitDescription);
      });
    });
    this.pid = this.proc.pid ?? -1;
    // kept until stop(): after its exit, a process's group may still hold its children
    if (this.pid > 0) live.add(this);
    this.proc.stdin?.on("error", () => {}); // the child may close its end first
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stdout!.on("data", (text: string) => this.onStdout(text));
    this.proc.stderr!.on("data", (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-TAIL_CHARS);
    });
  }

  private onStdout(text: string): void {
    this.stdoutTail = (this.stdoutTail + text).slice(-TAIL_CHARS);
    const lines = (this.partialLine + text).split("\n");
    this.partialLine = lines.pop() ?? "";
    for (const line of lines) for (const listener of this.lineListeners) listener(line);
  }

  /** Calls `listener` with every complete stdout line from now on; returns the unsubscriber. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  get running(): boolean {
    return this.exitDescription === undefined;
  }

  /** The last lines the process wrote, for error messages. */
  tail(): string {
    const text = (this.stderrTail.trim() || this.stdoutTail.trim()).split("\n").slice(-8);
    return text.join("\n");
  }

  /**
   * Why the process is gone: its exit, the line of its output that names the error (a thrown
   * Error, a nats-server fatal line) when there is one, then the end of its output.
   */
  failure(): string {
    const output = `${this.stderrTail}\n${this.stdoutTail}`.split("\n");
    const named = output.find((l) => /^\s*\w*(Error|Exception)\b.*:|\[(FTL|ERR)\]/.test(l));
    const tail = this.tail();
    const head = `${this.name} ${this.exitDescription ?? "is running"}`;
    return [named ? `${head}: ${named.trim()}` : head, tail].filter(Boolean).join("\n");
  }

  /**
   * Waits for the first stdout line that `accept` returns a value for. Rejects when the process
   * exits first or `timeoutMs` passes.
   */
  waitForLine<T>(accept: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name} was not ready after ${timeoutMs} ms: ${this.tail()}`));
      }, timeoutMs);
      const unsubscribe = this.onLine((line) => {
        const value = accept(line);
        if (value === undefined) return;
        done();
        resolve(value);
      });
      void this.exited.then(() => {
        done();
        reject(new Error(this.failure()));
      });
      function done() {
        clearTimeout(timer);
        unsubscribe();
      }
    });
  }

  /**
   * Stops the process and everything it started: SIGTERM to its group, then SIGKILL to the
   * group and to any descendant still alive after `graceMs` (they may have left the group).
   */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.pid <= 0) return;
    const family = descendantsOf(this.pid);
    signalGroup(this.pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    await within(this.exited, graceMs);
    while (Date.now() < deadline && family.some(isAlive)) await sleep(50);
    signalGroup(this.pid, "SIGKILL");
    for (const pid of family) if (isAlive(pid)) signal(pid, "SIGKILL");
    if (this.running) await within(this.exited, 1_000);
    live.delete(this);
  }

  /** Synchronous last resort for process exit: SIGKILL the group and known descendants. */
  killNow(): void {
    if (this.pid <= 0) return;
    const family = descendantsOf(this.pid);
    signalGroup(this.pid, "SIGKILL");
    for (const pid of family) signal(pid, "SIGKILL");
  }
}

/** Spawns a TypeScript file of this project with `node [nodeArgs] --import tsx`. */
export function spawnTs(
  name: string,
  root: string,
  file: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
  nodeArgs: string[] = [],
): Child {
  const argv = [...nodeArgs, "--import", "tsx", file, ...args];
  return new Child(name, process.execPath, argv, { cwd: root, env });
}

/** Stops every child still running, in parallel, and refuses to start new ones. */
export async function stopAllChildren(graceMs = 5_000): Promise<void> {
  closing = true;
  await Promise.all([...live].map((child) => child.stop(graceMs)));
}

/** For `process.on("exit")`: nothing asynchronous runs there, so kill outright. */
export function killAllChildrenNow(): void {
  for (const child of live) child.killNow();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `promise`, but no longer than `ms`; leaves no timer behind either way. */
export async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  signal(-pid, sig);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Alive and not a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    return statOf(pid).state !== "Z";
  } catch {
    return false;
  }
}

function statOf(pid: number): { ppid: number; state: string; cpuTicks: number } {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  // "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after the last ')'
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[11] and [12] are utime and stime (fields 14 and 15 of proc(5)), in clock ticks
  return { state: fields[0], ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/** CPU time (clock ticks) used so far by a process and all its living descendants. */
export function treeCpuTicks(root: number): number {
  let ticks = 0;
  for (const pid of [root, ...descendantsOf(root)]) {
    try {
      ticks += statOf(pid).cpuTicks;
    } catch {
      // exited while we looked
    }
  }
  return ticks;
}

/** CPU time (clock ticks) used so far by one process; 0 once it is gone. */
export function cpuTicksOf(pid: number): number {
  try {
    return statOf(pid).cpuTicks;
  } catch {
    return 0;
  }
}

/** Resident set size of one process in bytes (VmRSS of /proc/<pid>/status); 0 once it is gone. */
export function rssBytesOf(pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kib === undefined ? 0 : Number(kib) * 1024;
  } catch {
    return 0;
  }
}

/** The first descendant of `root` whose command name (/proc/<pid>/comm) is `name`. */
export function descendantNamed(root: number, name: string): number | undefined {
  return descendantsOf(root).find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === name;
    } catch {
      return false;
    }
  });
}

/** Every process whose ancestry leads to `root` right now (Linux /proc). */
function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const { ppid } = statOf(pid);
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.pop()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}
