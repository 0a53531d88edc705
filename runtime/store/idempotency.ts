// Idempotency keys: the first outcome of (tenant, capability, key) is kept in a JetStream KV bucket whose
// TTL is the dedup window; repeats get that outcome, and concurrent duplicates run the work once. What is kept is
// bounded: per record, per tenant over the window, and for the bucket as a whole (docs/security.md).
import { createHash } from "node:crypto";
import type { KV, KvEntry } from "@nats-io/kv";
import type { InvocationOutcome } from "../../actors/invocation.ts";
import { busCauseDetails, MigError, type MigErrorBody } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import type { RuntimeConfig } from "../base/config.ts";
import type { Logger } from "../base/logger.ts";
import type { Bus } from "../bus/bus.ts";
import { openBucket } from "../bus/replicas.ts";

export const IDEMPOTENCY_BUCKET = "mig_idempotency";
const BUCKET_STREAM = `KV_${IDEMPOTENCY_BUCKET}`;
/** The InvokeResponse header's meta key that tells a caller its result was not kept for its idempotency key. */
export const IDEMPOTENCY_META_KEY = "mig.idempotency";

/** What the store keeps, and how it removes a claim without writing (a full bucket refuses even a delete marker). */
export interface IdempotencyLimits {
  /** Largest record kept, in JSON bytes. */
  maxRecordBytes: number;
  /** Bytes of records one tenant may keep within the window (counted in this process). */
  tenantMaxBytes: number;
  windowMs: number;
  erase?: (revision: number) => Promise<void>;
}

const UNLIMITED: IdempotencyLimits = { maxRecordBytes: Infinity, tenantMaxBytes: Infinity, windowMs: 0 };

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
  /**
   * Set when the outcome was not kept for the key (too large, the tenant's budget used up, the bucket full): a
   * repeat runs the work again. The sentence goes to the caller in the response header's meta.
   */
  notKept?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function unavailable(err: unknown): MigError {
  return new MigError("MIG_UNAVAILABLE", "the idempotency store on the bus cannot be reached; retry shortly", {
    details: busCauseDetails(err),
    cause: err,
  });
}

/**
 * Opens the bucket with its size cap (an existing bucket made without one takes it) and the store over it with
 * the configured limits.
 */
export async function openIdempotencyStore(
  bus: Bus,
  config: RuntimeConfig,
  owner: string,
  logger: Logger,
): Promise<IdempotencyStore> {
  const kv = await openBucket(bus.kvm, bus.jsm, IDEMPOTENCY_BUCKET, config.jsReplicas, {
    ttl: config.idempotencyWindowMs,
    history: 1,
    max_bytes: config.idempotencyMaxBytes,
  });
  const info = await bus.jsm.streams.info(BUCKET_STREAM);
  if (info.config.max_bytes !== config.idempotencyMaxBytes) {
    try {
      await bus.jsm.streams.update(BUCKET_STREAM, { ...info.config, max_bytes: config.idempotencyMaxBytes });
    } catch (err) {
      logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "the idempotency bucket keeps its earlier size cap: JetStream refused MIG_IDEMPOTENCY_MAX_BYTES",
      );
    }
  }
  return new IdempotencyStore(kv, owner, {
    maxRecordBytes: config.idempotencyMaxRecordBytes,
    tenantMaxBytes: config.idempotencyTenantMaxBytes,
    windowMs: config.idempotencyWindowMs,
    erase: async (revision) => {
      await bus.jsm.streams.deleteMessage(BUCKET_STREAM, revision, false);
    },
  });
}

export class IdempotencyStore {
  /** Same-process duplicates share one promise and never touch the bucket twice. */
  private readonly local = new Map<string, Promise<IdempotentResult>>();
  private readonly budget: TenantBytes;
  /**
   * Whether the process `owner` is known to have left the fleet: its claims are taken over at once instead of at
   * the end of their lease (the caller's deadline). Set by the runtime once it watches the fleet.
   */
  ownerGone: (owner: string) => boolean = () => false;

  constructor(
    private readonly kv: KV,
    private readonly owner: string,
    private readonly limits: IdempotencyLimits = UNLIMITED,
  ) {
    this.budget = new TenantBytes(limits.windowMs, limits.tenantMaxBytes);
  }

  static keyOf(tenant: string, capability: string, idempotencyKey: string): string {
    const digest = createHash("sha256").update(`${tenant}\u0000${capability}\u0000${idempotencyKey}`).digest("hex");
    return `${tenant}.${digest}`;
  }

  run(key: string, deadlineAt: number, work: () => Promise<InvocationOutcome>): Promise<IdempotentResult> {
    const shared = this.local.get(key);
    if (shared) return shared.then((r) => ({ ...r, replayed: true }));
    const running = this.claimAndRun(key, deadlineAt, work).finally(() => this.local.delete(key));
    this.local.set(key, running);
    return running;
  }

  private async claimAndRun(
    key: string,
    deadlineAt: number,
    work: () => Promise<InvocationOutcome>,
  ): Promise<IdempotentResult> {
    const mine: Record = { state: "pending", owner: this.owner, lease_until: deadlineAt };
    let delay = 5;
    for (;;) {
      let revision: number | undefined;
      try {
        revision = await this.kv.create(key, JSON.stringify(mine));
      } catch (err) {
        // A full bucket keeps nothing more until records expire: the call runs, unkept, rather than being refused.
        if (isFullError(err)) return { outcome: await work(), replayed: false, notKept: this.storeFull() };
        if (!isExistsError(err)) throw unavailable(err);
      }
      if (revision !== undefined) return { ...(await this.runAndRecord(key, revision, work)), replayed: false };

      let entry: KvEntry | null;
      try {
        entry = await this.kv.get(key);
      } catch (err) {
        throw unavailable(err);
      }
      if (entry?.operation !== "PUT") continue;
      const record = entry.json<Record>();
      if (record.state === "done" && record.outcome) return { outcome: revive(record.outcome), replayed: true };
      if (record.lease_until < Date.now() || (record.owner !== this.owner && this.ownerGone(record.owner))) {
        // The first owner died or overran its deadline: take its claim over with compare-and-set.
        let taken: number;
        try {
          taken = await this.kv.update(key, JSON.stringify(mine), entry.revision);
        } catch {
          continue;
        }
        return { ...(await this.runAndRecord(key, taken, work)), replayed: false };
      }
      if (Date.now() >= deadlineAt) {
        return {
          outcome: {
            ok: false,
            error: new MigError(
              "MIG_TIMEOUT",
              "the deadline passed while an earlier call with the same idempotency_key was still running",
            ),
          },
          replayed: true,
        };
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Runs the work under the claim at `revision`, then keeps its outcome or, when it may not be kept, frees the key. */
  private async runAndRecord(
    key: string,
    revision: number,
    work: () => Promise<InvocationOutcome>,
  ): Promise<Omit<IdempotentResult, "replayed">> {
    const outcome = await work();
    if (!outcome.ok && (outcome.error.retryable || outcome.error.details?.cancelled === true)) {
      // A retryable failure must not stick: release the key so that a retry runs the work again. Nor does a
      // cancelled one: the work did not finish (its caller cancelled or went away), so a retry starts it again.
      await this.release(key, revision);
      return { outcome };
    }
    if (outcome.ok && textLengthAtLeast(outcome.payload, this.limits.maxRecordBytes + 1)) {
      // Certainly too large to keep, known without serializing it (large outputs are the ones this saves).
      await this.release(key, revision);
      return { outcome, notKept: this.tooLarge(`more than ${this.limits.maxRecordBytes}`) };
    }
    let record: string;
    try {
      const stored: StoredOutcome = outcome.ok ? outcome : { ok: false, error: outcome.error.toJSON() };
      record = JSON.stringify({ state: "done", owner: this.owner, lease_until: 0, outcome: stored });
    } catch {
      // An outcome that cannot be written down is not kept; the key is freed, never left pending.
      await this.release(key, revision);
      return { outcome };
    }
    const bytes = Buffer.byteLength(record);
    const tenant = key.slice(0, key.indexOf("."));
    let notKept: string;
    if (bytes > this.limits.maxRecordBytes) {
      notKept = this.tooLarge(String(bytes));
    } else if (!this.budget.charge(tenant, bytes)) {
      notKept = `not_stored: tenant ${tenant} already keeps ${this.limits.tenantMaxBytes} bytes of results within the idempotency window (MIG_IDEMPOTENCY_TENANT_MAX_BYTES); a repeat with this idempotency_key runs the capability again`;
    } else {
      try {
        await this.kv.put(key, record);
        return { outcome };
      } catch (err) {
        this.budget.refund(tenant, bytes);
        notKept = isFullError(err)
          ? this.storeFull()
          : "not_stored: the idempotency store on the bus could not be written; a repeat with this idempotency_key runs the capability again";
      }
    }
    await this.release(key, revision);
    return { outcome, notKept };
  }

  private tooLarge(size: string): string {
    return `not_stored: the result is ${size} bytes, more than the ${this.limits.maxRecordBytes} an idempotency record may hold (MIG_IDEMPOTENCY_MAX_RECORD_BYTES); a repeat with this idempotency_key runs the capability again`;
  }

  private storeFull(): string {
    return "not_stored: the idempotency store is full (MIG_IDEMPOTENCY_MAX_BYTES) until older records expire; a repeat with this idempotency_key runs the capability again";
  }

  /**
   * Frees the key by removing this claim (a delete marker, or when the bucket refuses one, the claim's message
   * itself). Only the claim at `revision`: a claim taken over by another owner since is theirs.
   */
  private async release(key: string, revision: number): Promise<void> {
    try {
      await this.kv.delete(key, { previousSeq: revision });
      return;
    } catch {
      // Fall through to erasing the claim.
    }
    await this.limits.erase?.(revision).catch(() => undefined);
  }
}

/**
 * Bytes kept per tenant over a sliding window, summed in at most 17 time slots per tenant: a record counts from
 * when it is kept until one window after the end of its slot, so the count errs high by at most a sixteenth of the
 * window, never low.
 */
export class TenantBytes {
  private readonly tenants = new Map<string, { until: number; bytes: number }[]>();
  private readonly slotMs: number;

  constructor(
    private readonly windowMs: number,
    private readonly maxBytes: number,
    private readonly now: () => number = Date.now,
    private readonly maxTenants = 100_000,
  ) {
    this.slotMs = Math.max(1, Math.ceil(windowMs / 16));
  }

  /** Counts `bytes` for the tenant if they fit its budget; false, counting nothing, when they do not. */
  charge(tenant: string, bytes: number): boolean {
    if (this.maxBytes === Infinity) return true;
    const now = this.now();
    let slots = this.tenants.get(tenant);
    if (bytes + this.used(slots, now) > this.maxBytes) return false;
    if (!slots) {
      if (this.tenants.size >= this.maxTenants) this.prune(now);
      slots = [];
      this.tenants.set(tenant, slots);
    }
    const until = (Math.floor(now / this.slotMs) + 1) * this.slotMs + this.windowMs;
    const last = slots[slots.length - 1];
    if (last && last.until === until) last.bytes += bytes;
    else slots.push({ until, bytes });
    return true;
  }

  /** Takes back a charge whose record was not written after all. */
  refund(tenant: string, bytes: number): void {
    const last = this.tenants.get(tenant)?.at(-1);
    if (last) last.bytes = Math.max(0, last.bytes - bytes);
  }

  /** Bytes the tenant keeps now. */
  usedBy(tenant: string): number {
    return this.used(this.tenants.get(tenant), this.now());
  }

  private used(slots: { until: number; bytes: number }[] | undefined, now: number): number {
    if (!slots) return 0;
    while (slots.length > 0 && slots[0]!.until <= now) slots.shift();
    let sum = 0;
    for (const slot of slots) sum += slot.bytes;
    return sum;
  }

  private prune(now: number): void {
    for (const [tenant, slots] of this.tenants) if (this.used(slots, now) === 0) this.tenants.delete(tenant);
    while (this.tenants.size >= this.maxTenants) this.tenants.delete(this.tenants.keys().next().value!);
  }
}

function revive(stored: StoredOutcome): InvocationOutcome {
  return stored.ok ? stored : { ok: false, error: MigError.fromBody(stored.error) };
}

/** The bucket is at MIG_IDEMPOTENCY_MAX_BYTES (its discard policy is `new`: it refuses rather than evicts). */
function isFullError(err: unknown): boolean {
  return /maximum (bytes|messages) exceeded|insufficient (storage )?resources/i.test(
    err instanceof Error ? err.message : String(err),
  );
}

function isExistsError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|key exists/i.test(message);
}

/**
 * Whether the keys and strings of `value` add up to at least `bound` characters: a lower bound of its JSON size in
 * bytes (UTF-8 takes at least one byte per UTF-16 unit), found without serializing and stopping once reached.
 */
function textLengthAtLeast(value: unknown, bound: number): boolean {
  let total = 0;
  const visit = (node: unknown, depth: number): boolean => {
    if (typeof node === "string") total += node.length;
    else if (node !== null && typeof node === "object" && depth < 100) {
      if (Array.isArray(node)) {
        for (const item of node) if (visit(item, depth + 1)) return true;
      } else {
        for (const [name, item] of Object.entries(node)) {
          total += name.length;
          if (visit(item, depth + 1)) return true;
        }
      }
    }
    return total >= bound;
  };
  return visit(value, 0);
}
