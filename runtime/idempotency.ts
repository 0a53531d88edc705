// Idempotency keys: the first outcome of (tenant, capability, key) is kept in a JetStream KV bucket whose
// TTL is the dedup window; repeats get that outcome, and concurrent duplicates run the work once.
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { MigError, type MigErrorBody } from "./errors.ts";
import type { InvocationOutcome } from "../actors/invocation.ts";
import type { JsonObject } from "./types.ts";

export const IDEMPOTENCY_BUCKET = "mig_idempotency";

type StoredOutcome = { ok: true; payload: JsonObject } | { ok: false; error: MigErrorBody };

interface Record {
  state: "pending" | "done";
  owner: string;
  /** Until when the owner's claim holds; a pending record past it may be taken over. */
  lease_until: number;
  outcome?: StoredOutcome;
}

export interface IdempotentResult {
  outcome: InvocationOutcome;
  /** True when the outcome came from an earlier run rather than from `work`. */
  replayed: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function unavailable(err: unknown): MigError {
  return new MigError("MIG_UNAVAILABLE", "the idempotency store on the bus cannot be reached; retry shortly", {
    details: { cause: err instanceof Error ? err.message : String(err) },
  });
}

export class IdempotencyStore {
  /** Same-process duplicates share one promise and never touch the bucket twice. */
  private readonly local = new Map<string, Promise<IdempotentResult>>();

  constructor(
    private readonly kv: KV,
    private readonly owner: string,
  ) {}

  static keyOf(tenant: string, capability: string, idempotencyKey: string): string {
    const digest = createHash("sha256").update(`${tenant}\u0000${capability}\u0000${idempotencyKey}`).digest("hex");
    return `${tenant}.${digest}`;
  }

  run(key: string, deadlineAt: number, work: () => Promise<InvocationOutcome>): Promise<IdempotentResult> {
    const shared = this.local.get(key);
    if (shared) return shared.then((r) => ({ outcome: r.outcome, replayed: true }));
    const running = this.claimAndRun(key, deadlineAt, work).finally(() => this.local.delete(key));
    this.local.set(key, running);
    return running;
  }

  private async claimAndRun(key: string, deadlineAt: number, work: () => Promise<InvocationOutcome>): Promise<IdempotentResult> {
    const mine: Record = { state: "pending", owner: this.owner, lease_until: deadlineAt };
    let delay = 5;
    for (;;) {
      let claimed = false;
      try {
        await this.kv.create(key, JSON.stringify(mine));
        claimed = true;
      } catch (err) {
        if (!isExistsError(err)) throw unavailable(err);
      }
      if (claimed) return { outcome: await this.runAndRecord(key, work), replayed: false };

      let entry;
      try {
        entry = await this.kv.get(key);
      } catch (err) {
        throw unavailable(err);
      }
      if (!entry || entry.operation !== "PUT") continue;
      const record = entry.json<Record>();
      if (record.state === "done" && record.outcome) return { outcome: revive(record.outcome), replayed: true };
      if (record.lease_until < Date.now()) {
        // The first owner died or overran its deadline: take its claim over with compare-and-set.
        try {
          await this.kv.update(key, JSON.stringify(mine), entry.revision);
          return { outcome: await this.runAndRecord(key, work), replayed: false };
        } catch {
          continue;
        }
      }
      if (Date.now() >= deadlineAt) {
        return {
          outcome: { ok: false, error: new MigError("MIG_TIMEOUT", "the deadline passed while an earlier call with the same idempotency_key was still running") },
          replayed: true,
        };
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 100);
    }
  }

  private async runAndRecord(key: string, work: () => Promise<InvocationOutcome>): Promise<InvocationOutcome> {
    const outcome = await work();
    try {
      if (!outcome.ok && outcome.error.retryable) {
        // A retryable failure must not stick: release the key so that a retry runs the work again.
        await this.kv.delete(key);
      } else {
        const stored: StoredOutcome = outcome.ok ? outcome : { ok: false, error: outcome.error.toJSON() };
        await this.kv.put(key, JSON.stringify({ state: "done", owner: this.owner, lease_until: 0, outcome: stored }));
      }
    } catch {
      // The outcome stands even if recording it failed; a later repeat may then run the work again.
    }
    return outcome;
  }
}

function revive(stored: StoredOutcome): InvocationOutcome {
  return stored.ok ? stored : { ok: false, error: MigError.fromBody(stored.error) };
}

function isExistsError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|key exists/i.test(message);
}
