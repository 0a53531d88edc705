// The audit log: one record per operation and per authorization decision, batched off the hot path into
// a JetStream stream (and optionally a JSONL file), readable by tenant through the admin route.
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { MigError, type MigErrorCode } from "../../schemas/errors.ts";
import type { RuntimeConfig } from "../base/config.ts";
import type { Logger } from "../base/logger.ts";
import type { Bus } from "../bus/bus.ts";
import { checkReplicas, placementError } from "../bus/replicas.ts";
import { isoNow } from "../protocol/clock.ts";
import { checkTenant } from "../protocol/names.ts";
import { auditLine } from "./audit-line.ts";
import type { AuditDecision, AuditRecord } from "./audit-record.ts";

// The record type is still imported from here, with the log.
export type { AuditRecord } from "./audit-record.ts";

export const AUDIT_STREAM = "MIG_AUDIT";
/** Internal subjects (under `_MIG.`, which client credentials cannot publish to): `_MIG.audit.t.<tenant>`. */
export const AUDIT_SUBJECT_PREFIX = "_MIG.audit";
const NO_TENANT_SUBJECT = `${AUDIT_SUBJECT_PREFIX}.none`;
const TENANT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

const FLUSH_EVERY_MS = 25;
const FLUSH_AT = 512;
const MAX_QUEUED = 50_000;
/**
 * Records of one flush and one tenant travel as one stream message, one JSON record per line: storing a
 * message per record cost nats-server about as much as the PUBLISH it audited (docs/decisions.md, 'Audit records
 * are core publishes into a JetStream stream'). A record's cursor (`seq`) is its message's stream sequence times
 * CURSOR_SPAN plus its line, so it stays one integer.
 */
const RECORDS_PER_MESSAGE = 512;
const CURSOR_SPAN = 1024;

export interface AuditQuery {
  tenant?: string | undefined;
  limit: number;
  /** Only records after this cursor (a record's `seq`), oldest first; without it, the newest `limit` records. */
  after?: number | undefined;
}

export interface StoredAuditRecord extends AuditRecord {
  /** The record's cursor: its stream message's sequence × CURSOR_SPAN + its line in that message. */
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
      num_replicas: this.config.jsReplicas,
    };
    try {
      const info = await this.bus.jsm.streams.info(AUDIT_STREAM);
      checkReplicas(info, this.config.jsReplicas);
      if (info.config.max_age !== wanted.max_age || info.config.max_bytes !== wanted.max_bytes) {
        await this.bus.jsm.streams.update(AUDIT_STREAM, {
          ...info.config,
          max_age: wanted.max_age!,
          max_bytes: wanted.max_bytes!,
        });
      }
    } catch (err) {
      if (!/stream not found/i.test((err as Error).message)) throw err;
      await this.bus.jsm.streams.add(wanted).catch((cause: unknown) => {
        throw placementError(cause, "the audit stream", this.config.jsReplicas);
      });
    }
    if (this.config.auditFile) {
      mkdirSync(dirname(this.config.auditFile), { recursive: true });
      this.file = createWriteStream(this.config.auditFile, { flags: "a" });
      this.file.on("error", (err) =>
        this.logger.error({ err: err.message, file: this.config.auditFile }, "audit file write failed"),
      );
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
    const messages = new Map<string, { records: AuditRecord[]; lines: string[] }[]>();
    let fileLines = "";
    for (const record of batch) {
      const line = auditLine(record);
      if (this.file) fileLines += `${line}\n`;
      const subject = auditSubject(record.tenant);
      let chunks = messages.get(subject);
      if (!chunks) messages.set(subject, (chunks = []));
      let chunk = chunks[chunks.length - 1];
      if (!chunk || chunk.records.length === RECORDS_PER_MESSAGE) chunks.push((chunk = { records: [], lines: [] }));
      chunk.records.push(record);
      chunk.lines.push(line);
    }
    const unsent: AuditRecord[] = [];
    for (const [subject, chunks] of messages) {
      for (const chunk of chunks) {
        if (unsent.length > 0) {
          unsent.push(...chunk.records);
          continue;
        }
        try {
          this.bus.nc.publish(subject, this.encoder.encode(chunk.lines.join("\n")));
        } catch (err) {
          // The connection is closed or draining: keep the rest for a later flush, if there is one.
          unsent.push(...chunk.records);
          this.logger.warn({ err: (err as Error).message }, "audit records could not be published yet");
        }
      }
    }
    if (unsent.length > 0) this.queue = unsent.concat(this.queue);
    if (this.file && fileLines) this.file.write(fileLines);
  }

  /** Reads records back from the stream, newest `limit` (or the `limit` after a cursor), filtered by tenant. */
  async query(query: AuditQuery): Promise<{ records: StoredAuditRecord[]; last_seq: number }> {
    this.flush();
    await this.bus.nc.flush();
    const subject = query.tenant === undefined ? `${AUDIT_SUBJECT_PREFIX}.>` : auditSubject(query.tenant);
    let lastMessageSeq: number;
    let lastSeq: number;
    try {
      const last = (await this.bus.jsm.streams.getMessage(AUDIT_STREAM, { last_by_subj: subject }))!;
      lastMessageSeq = last.seq;
      lastSeq = cursorOf(last.seq, lineCount(last.string()) - 1);
    } catch {
      return { records: [], last_seq: 0 };
    }
    const after = query.after;
    if (after !== undefined && after >= lastSeq) return { records: [], last_seq: lastSeq };
    // The message holding the cursor may still hold later records: paging starts there and skips up to the cursor.
    const startMessage = after !== undefined ? Math.max(1, Math.floor(after / CURSOR_SPAN)) : undefined;
    const consumer = await this.bus.js.consumers.get(AUDIT_STREAM, {
      filter_subjects: subject,
      ...(startMessage !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startMessage }
        : { deliver_policy: DeliverPolicy.All }),
    });
    const records: StoredAuditRecord[] = [];
    let seen = 0;
    for (let done = false; !done; ) {
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      let got = 0;
      for await (const msg of batch) {
        got++;
        seen++;
        const lines = msg.string().split("\n");
        for (let line = 0; line < lines.length && !done; line++) {
          const seq = cursorOf(msg.seq, line);
          if (after !== undefined && seq <= after) continue;
          records.push({ ...(JSON.parse(lines[line]!) as AuditRecord), seq });
          // Forward paging stops at `limit`; "newest" keeps a window of the last `limit`.
          if (after === undefined && records.length > query.limit) records.shift();
          if (after !== undefined && records.length >= query.limit) done = true;
        }
        if (done || msg.seq >= lastMessageSeq) {
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

function cursorOf(messageSeq: number, line: number): number {
  return messageSeq * CURSOR_SPAN + line;
}

function lineCount(text: string): number {
  let count = 1;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) count++;
  return count;
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
  request: {
    principal: { subject: string; tenant_id: string | undefined; authenticated: boolean };
    tenant?: string | undefined;
    binding: string;
    authorized?: boolean;
    mcp?: { method: string; name?: string | undefined; request_id?: string | undefined } | undefined;
  },
  target: string | undefined,
  error: { code: MigErrorCode; message: string } | undefined,
): AuditRecord {
  const raw =
    body !== null && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const header =
    raw.header !== null && typeof raw.header === "object" && !Array.isArray(raw.header)
      ? (raw.header as Record<string, unknown>)
      : {};
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
    decision: decisionOf(error?.code, request.authorized === true || error === undefined),
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
  const { mcp } = request;
  if (mcp !== undefined) {
    record.mcp_method = mcp.method.slice(0, 64);
    const name = shortString(mcp.name);
    if (name !== undefined) record.mcp_name = name;
    const requestId = shortString(mcp.request_id, 64);
    if (requestId !== undefined) record.mcp_request_id = requestId;
  }
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
