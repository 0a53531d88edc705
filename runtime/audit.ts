// The audit log: one record per operation and per authorization decision, batched off the hot path into
// a JetStream stream (and optionally a JSONL file), readable by tenant through the admin route.
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Bus } from "./bus.ts";
import { isoNow } from "./clock.ts";
import type { RuntimeConfig } from "./config.ts";
import { MigError, type MigErrorCode } from "./errors.ts";
import { checkTenant } from "./names.ts";
import type { Logger } from "./logger.ts";

export const AUDIT_STREAM = "MIG_AUDIT";
/** Internal subjects (under `_MIG.`, which client credentials cannot publish to): `_MIG.audit.t.<tenant>`. */
export const AUDIT_SUBJECT_PREFIX = "_MIG.audit";
const NO_TENANT_SUBJECT = `${AUDIT_SUBJECT_PREFIX}.none`;
const TENANT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

const FLUSH_EVERY_MS = 25;
const FLUSH_AT = 512;
const MAX_QUEUED = 50_000;

export type AuditDecision = "allow" | "deny" | "none";

export interface AuditRecord {
  /** RFC 3339 time of the decision. */
  ts: string;
  server_id: string;
  /** `operation`: a MIG operation; `authentication`: a refused credential; `admin`: an admin route. */
  kind: "operation" | "authentication" | "admin";
  binding: string;
  /** Who: the principal's subject (`sub`), or the X-Actor / "anonymous" name in auth mode none. */
  actor: string;
  authenticated: boolean;
  /** The tenant acted for (the credential's tenant when there is one); "" when unknown. */
  tenant: string;
  /** A different tenant the request named (a cross-tenant attempt), when there was one. */
  requested_tenant?: string;
  operation: string;
  /** The capability, topic, target message id or admin path. */
  target?: string;
  /** The authorization decision: allow, deny (MIG_UNAUTHORIZED, MIG_FORBIDDEN, MIG_RATE_LIMITED) or none (refused before it). */
  decision: AuditDecision;
  outcome: "ok" | "error";
  code?: MigErrorCode;
  reason?: string;
  message_id?: string;
  traceparent?: string;
}

export interface AuditQuery {
  tenant?: string | undefined;
  limit: number;
  /** Only records after this stream sequence (oldest first); without it, the newest `limit` records. */
  after?: number | undefined;
}

export interface StoredAuditRecord extends AuditRecord {
  seq: number;
}

const DENY_CODES: ReadonlySet<string> = new Set(["MIG_UNAUTHORIZED", "MIG_FORBIDDEN", "MIG_RATE_LIMITED"]);

export function decisionOf(code: MigErrorCode | undefined, authorized: boolean): AuditDecision {
  if (code === undefined) return "allow";
  if (DENY_CODES.has(code)) return "deny";
  return authorized ? "allow" : "none";
}

export function auditSubject(tenant: string): string {
  return TENANT_TOKEN.test(tenant) ? `${AUDIT_SUBJECT_PREFIX}.t.${tenant}` : NO_TENANT_SUBJECT;
}

/**
 * Records are queued and written every few milliseconds as core NATS publishes into the stream: an
 * invocation never waits for the audit write. A queue that outgrows its bound (a bus outage) drops the
 * newest records and counts them, rather than growing without limit.
 */
export class AuditLog {
  private queue: AuditRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private file: WriteStream | undefined;
  private readonly encoder = new TextEncoder();
  dropped = 0;

  constructor(
    private readonly bus: Bus,
    private readonly config: RuntimeConfig,
    private readonly logger: Logger,
  ) {}

  /** Creates the stream (or updates its retention) and opens the JSONL file. */
  async open(): Promise<void> {
    const wanted: Partial<StreamConfig> & { name: string } = {
      name: AUDIT_STREAM,
      subjects: [`${AUDIT_SUBJECT_PREFIX}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(this.config.auditMaxAgeMs),
      max_bytes: this.config.auditMaxBytes,
    };
    try {
      const info = await this.bus.jsm.streams.info(AUDIT_STREAM);
      if (info.config.max_age !== wanted.max_age || info.config.max_bytes !== wanted.max_bytes) {
        await this.bus.jsm.streams.update(AUDIT_STREAM, { ...info.config, max_age: wanted.max_age!, max_bytes: wanted.max_bytes! });
      }
    } catch (err) {
      if (!/stream not found/i.test((err as Error).message)) throw err;
      await this.bus.jsm.streams.add(wanted);
    }
    if (this.config.auditFile) {
      mkdirSync(dirname(this.config.auditFile), { recursive: true });
      this.file = createWriteStream(this.config.auditFile, { flags: "a" });
      this.file.on("error", (err) => this.logger.error({ err: err.message, file: this.config.auditFile }, "audit file write failed"));
    }
  }

  record(record: AuditRecord): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    this.queue.push(record);
    if (this.queue.length >= FLUSH_AT) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), FLUSH_EVERY_MS);
      this.timer.unref();
    }
  }

  /** Writes what is queued; never throws (a closed bus keeps the records for the next flush). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    let lines = "";
    for (let i = 0; i < batch.length; i++) {
      const record = batch[i]!;
      const line = JSON.stringify(record);
      if (this.file) lines += line + "\n";
      try {
        this.bus.nc.publish(auditSubject(record.tenant), this.encoder.encode(line));
      } catch (err) {
        // The connection is closed or draining: keep the rest for a later flush, if there is one.
        this.queue = batch.slice(i).concat(this.queue);
        this.logger.warn({ err: (err as Error).message, queued: this.queue.length }, "audit records could not be published yet");
        break;
      }
    }
    if (this.file && lines) this.file.write(lines);
  }

  /** Reads records back from the stream, newest `limit` (or the `limit` after a cursor), filtered by tenant. */
  async query(query: AuditQuery): Promise<{ records: StoredAuditRecord[]; last_seq: number }> {
    this.flush();
    await this.bus.nc.flush();
    const subject = query.tenant === undefined ? `${AUDIT_SUBJECT_PREFIX}.>` : auditSubject(query.tenant);
    let lastSeq: number;
    try {
      lastSeq = (await this.bus.jsm.streams.getMessage(AUDIT_STREAM, { last_by_subj: subject }))!.seq;
    } catch {
      return { records: [], last_seq: 0 };
    }
    const startSeq = query.after !== undefined ? query.after + 1 : undefined;
    if (startSeq !== undefined && startSeq > lastSeq) return { records: [], last_seq: lastSeq };
    const consumer = await this.bus.js.consumers.get(AUDIT_STREAM, {
      filter_subjects: subject,
      ...(startSeq !== undefined ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : { deliver_policy: DeliverPolicy.All }),
    });
    const records: StoredAuditRecord[] = [];
    let seen = 0;
    for (let done = false; !done; ) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      for await (const msg of batch) {
        got++;
        seen++;
        records.push({ ...(msg.json() as AuditRecord), seq: msg.seq });
        // Forward paging stops at `limit`; "newest" keeps a window of the last `limit`.
        if (startSeq === undefined && records.length > query.limit) records.shift();
        if (msg.seq >= lastSeq || (startSeq !== undefined && records.length >= query.limit)) {
          done = true;
          break;
        }
      }
      if (got === 0 || seen > 1_000_000) done = true;
    }
    return { records, last_seq: lastSeq };
  }

  async close(): Promise<void> {
    this.flush();
    const file = this.file;
    this.file = undefined;
    if (file) await new Promise<void>((resolve) => file.end(() => resolve()));
  }
}

const SHORT = 200;

function shortString(value: unknown, max = SHORT): string | undefined {
  return typeof value === "string" && value !== "" ? value.slice(0, max) : undefined;
}

/**
 * The record of one operation, built from what the operation left in the body: acceptHeader writes the
 * normalized header back, so a request that got that far is recorded with its message id and trace.
 */
export function operationRecord(
  serverId: string,
  operation: string,
  body: unknown,
  request: { principal: { subject: string; tenant_id: string | undefined; authenticated: boolean }; tenant?: string | undefined; binding: string; authorized?: boolean },
  target: string | undefined,
  error: { code: MigErrorCode; message: string } | undefined,
): AuditRecord {
  const raw = body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const header = raw.header !== null && typeof raw.header === "object" && !Array.isArray(raw.header) ? (raw.header as Record<string, unknown>) : {};
  const { principal } = request;
  const named = shortString(header.tenant_id, 64) ?? shortString(request.tenant, 64);
  const tenant = principal.tenant_id ?? named ?? "";
  const record: AuditRecord = {
    ts: isoNow(),
    server_id: serverId,
    kind: "operation",
    binding: request.binding,
    actor: principal.subject.slice(0, SHORT),
    authenticated: principal.authenticated,
    tenant,
    operation,
    decision: decisionOf(error?.code, request.authorized === true || (error === undefined)),
    outcome: error ? "error" : "ok",
  };
  if (named !== undefined && named !== tenant) record.requested_tenant = named;
  const shownTarget = shortString(target);
  if (shownTarget !== undefined) record.target = shownTarget;
  if (error) {
    record.code = error.code;
    record.reason = error.message.slice(0, 300);
  }
  const messageId = shortString(header.message_id, 64);
  if (messageId !== undefined) record.message_id = messageId;
  const traceparent = shortString(header.traceparent, 64);
  if (traceparent !== undefined) record.traceparent = traceparent;
  return record;
}

/** Reads the admin route's query (`tenant`, `limit`, `after`); a bad value is MIG_INVALID_REQUEST. */
export function parseAuditQuery(params: { get(name: string): string | null }): AuditQuery {
  const tenant = params.get("tenant") ?? undefined;
  if (tenant !== undefined) checkTenant(tenant, "tenant");
  const number = (name: string, min: number, max: number): number | undefined => {
    const raw = params.get(name);
    if (raw === null) return undefined;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new MigError("MIG_INVALID_REQUEST", `${name} must be an integer between ${min} and ${max}`);
    }
    return value;
  };
  return { tenant, limit: number("limit", 1, 1000) ?? 100, after: number("after", 0, Number.MAX_SAFE_INTEGER) };
}
