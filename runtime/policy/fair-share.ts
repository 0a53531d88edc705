// Fair turns on a saturated runtime: while the event loop is busy and more than one tenant is active (operations
// running, or one sent within the last second), each tenant runs at most a few INVOKEs and PUBLISHes at once; its
// further ones wait, in arrival order, for one of its own to finish. A tenant below that number starts at once.
//
// Why: every tenant's work shares one event loop, served first come first served. A tenant that keeps dozens of
// expensive calls in flight (large outputs, a publish flood) put a queue of its own work in front of every other
// tenant's request. Limiting in-flight work only while the loop is saturated costs nothing otherwise: a lone
// tenant, or a runtime with spare time, runs everything at once, and slow I/O-bound calls (a model answering
// for seconds) are not throttled while the process is idle. docs/security.md, 'Fair turns'.
import { performance } from "node:perf_hooks";
import { MigError } from "../../schemas/errors.ts";

export interface FairShareSettings {
  /** Operations one tenant runs at once while the loop is saturated and other tenants are active; 0: no limit. */
  perTenant: number;
  /** Event-loop utilisation (0–1) from which the loop counts as saturated; 0 applies the turns always. */
  busyUtilisation: number;
  /** How long an operation waits for its turn before it is answered MIG_BACKPRESSURE. */
  waitMs: number;
}

/** How often the loop's utilisation is read: short, so the turns start and stop with the load. */
const SAMPLE_MS = 100;
/** A tenant counts as active while it has operations running, and this long after it last sent one. */
const ACTIVE_MS = 1_000;

interface Waiter {
  admit(): void;
}

export class FairShare {
  private readonly running = new Map<string, number>();
  private readonly waiting = new Map<string, Waiter[]>();
  private readonly lastSeen = new Map<string, number>();
  private lastSample = performance.eventLoopUtilization();
  private saturated: boolean;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly settings: FairShareSettings,
    private readonly onWait: (outcome: "admitted" | "refused") => void = () => undefined,
  ) {
    this.saturated = settings.busyUtilisation <= 0;
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  /**
   * Takes a turn for one operation of `tenant`: undefined when it may start now, else a promise that resolves
   * when it may, or rejects with MIG_BACKPRESSURE after the wait (at most `deadlineMs`). Call `leave` once after.
   */
  enter(tenant: string, deadlineMs: number): Promise<void> | undefined {
    const now = Date.now();
    this.lastSeen.set(tenant, now);
    if (!this.waiting.has(tenant) && !this.overShare(tenant, now)) {
      this.take(tenant);
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const queue = this.waiting.get(tenant) ?? [];
      this.waiting.set(tenant, queue);
      const waitMs = Math.max(1, Math.min(this.settings.waitMs, deadlineMs));
      const timer = setTimeout(() => {
        this.drop(tenant, waiter);
        this.onWait("refused");
        reject(
          new MigError(
            "MIG_BACKPRESSURE",
            `this runtime is saturated and tenant ${tenant} already runs ${this.settings.perTenant} operations at once, its fair turn (MIG_TENANT_FAIR_INFLIGHT); none finished within ${waitMs} ms, retry shortly`,
            {
              details: { limit: this.settings.perTenant, limit_scope: "tenant_fair_share", retry_after_ms: waitMs },
            },
          ),
        );
      }, waitMs);
      const waiter: Waiter = {
        admit: () => {
          clearTimeout(timer);
          this.take(tenant);
          this.onWait("admitted");
          resolve();
        },
      };
      queue.push(waiter);
    });
  }

  leave(tenant: string): void {
    const held = (this.running.get(tenant) ?? 1) - 1;
    if (held > 0) this.running.set(tenant, held);
    else this.running.delete(tenant);
    this.admitWaiting(tenant, Date.now());
  }

  /** Operations of `tenant` running now (for tests and metrics). */
  runningOf(tenant: string): number {
    return this.running.get(tenant) ?? 0;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private overShare(tenant: string, now: number): boolean {
    const { perTenant } = this.settings;
    if (perTenant === 0 || !this.saturated || (this.running.get(tenant) ?? 0) < perTenant) return false;
    for (const [other, seen] of this.lastSeen) if (other !== tenant && now - seen < ACTIVE_MS) return true;
    for (const other of this.running.keys()) if (other !== tenant) return true;
    return false;
  }

  private take(tenant: string): void {
    this.running.set(tenant, (this.running.get(tenant) ?? 0) + 1);
  }

  private drop(tenant: string, waiter: Waiter): void {
    const queue = this.waiting.get(tenant);
    if (!queue) return;
    const at = queue.indexOf(waiter);
    if (at >= 0) queue.splice(at, 1);
    if (queue.length === 0) this.waiting.delete(tenant);
  }

  /** Starts the tenant's oldest waiting operations for as long as it is within its turn. */
  private admitWaiting(tenant: string, now: number): void {
    const queue = this.waiting.get(tenant);
    while (queue && queue.length > 0 && !this.overShare(tenant, now)) queue.shift()!.admit();
    if (queue?.length === 0) this.waiting.delete(tenant);
  }

  private sample(): void {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, this.lastSample);
    this.lastSample = now;
    this.saturated = utilization >= this.settings.busyUtilisation;
    const at = Date.now();
    for (const [tenant, seen] of this.lastSeen) if (at - seen >= ACTIVE_MS) this.lastSeen.delete(tenant);
    // The load went, or the other tenants did: whoever waits may start.
    for (const tenant of [...this.waiting.keys()]) this.admitWaiting(tenant, at);
  }
}
