// The newest audit records for the admin console, read a few at a time from the end of the audit log.
import type { AdminView, MigRuntime } from "../../runtime/mod.ts";

/** How many records the console shows. */
export const AUDIT_SHOWN = 20;
/** A record's cursor is its stream message's sequence × CURSOR_SPAN + its line in it (docs/security.md). */
const CURSOR_SPAN = 1024;
/** Past this many views followed at once, the tails start over (a view costs one small read a second). */
const MAX_TAILS = 100;
/** Messages read back from the newest when its own records are too few (the log writes a message per 25 ms). */
const MESSAGES_BACK = 20;
/** Records per read (the audit route's largest page), and reads per snapshot at most. */
const PAGE = 1000;
const MAX_PAGES = 12;

type AuditRecordView = Awaited<ReturnType<MigRuntime["readAudit"]>>["records"][number];

interface Tail {
  lastSeq: number;
  records: AuditRecordView[];
}

/**
 * Where to start reading so that the newest AUDIT_SHOWN records are read: within the newest message when it holds
 * that many (a busy log), else from MESSAGES_BACK messages before it (a quiet log writes small messages).
 */
function startCursor(lastSeq: number): number {
  const message = Math.floor(lastSeq / CURSOR_SPAN);
  const line = lastSeq % CURSOR_SPAN;
  if (line >= AUDIT_SHOWN) return lastSeq - AUDIT_SHOWN;
  // `after` = the last cursor of the message before the first one wanted.
  return Math.max(0, (message - MESSAGES_BACK) * CURSOR_SPAN - 1);
}

/**
 * Follows the end of the audit log per tenant shown. Reading the log's newest records from the start of the stream
 * each second would cost a scan of the whole log; instead a cheap probe (`after` past the end answers only the last
 * cursor) says whether anything is new, and only then are the records after the last one seen read.
 */
export class AuditTail {
  private readonly tails = new Map<string, Tail>();
  private readonly reading = new Map<string, Promise<{ records: AuditRecordView[]; last_seq: number }>>();

  constructor(private readonly runtime: MigRuntime) {}

  /** The newest records `view` may read, of `tenant` (every tenant when undefined), newest first. */
  newest(view: AdminView, tenant: string | undefined): Promise<{ records: AuditRecordView[]; last_seq: number }> {
    const key = tenant === undefined ? "" : `t:${tenant}`;
    // Two readers of one tail at once (a snapshot asked while the live feed reads) share the read, not append twice.
    let reading = this.reading.get(key);
    if (!reading) {
      reading = this.follow(key, view, tenant).finally(() => this.reading.delete(key));
      this.reading.set(key, reading);
    }
    return reading;
  }

  private async follow(
    key: string,
    view: AdminView,
    tenant: string | undefined,
  ): Promise<{ records: AuditRecordView[]; last_seq: number }> {
    const query = (after: number) => ({
      get: (name: string) =>
        name === "after"
          ? String(after)
          : name === "limit"
            ? String(PAGE)
            : name === "tenant"
              ? (tenant ?? null)
              : null,
    });
    const probe = await this.runtime.readAudit(query(Number.MAX_SAFE_INTEGER), view);
    let tail = this.tails.get(key);
    // A log that went back (its stream was recreated) is followed anew.
    if (!tail || probe.last_seq < tail.lastSeq) {
      if (!tail && this.tails.size >= MAX_TAILS) this.tails.clear();
      this.tails.set(key, (tail = { lastSeq: 0, records: [] }));
    }
    if (probe.last_seq !== tail.lastSeq) {
      // Pages forward from where the tail stopped (or from near the end), keeping the newest records of each page.
      let from = Math.max(tail.lastSeq, startCursor(probe.last_seq));
      for (let page = 0; page < MAX_PAGES; page++) {
        const read = await this.runtime.readAudit(query(from), view);
        tail.records = tail.records.concat(read.records).slice(-AUDIT_SHOWN);
        tail.lastSeq = Math.max(tail.lastSeq, read.last_seq);
        if (read.records.length < PAGE) break;
        from = read.records[read.records.length - 1]!.seq;
      }
      tail.lastSeq = Math.max(tail.lastSeq, probe.last_seq);
    }
    return { records: [...tail.records].reverse(), last_seq: tail.lastSeq };
  }
}
