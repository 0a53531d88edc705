// The work in flight in this process, by message id (invocations and streams, the targets of CANCEL), and the ids
// that finished lately, so that a late CANCEL can say "already_completed". One owner, InflightTables: the tables
// change only through it, so the per-tenant count and the finished ids cannot drift from the tables.
import type { Actor } from "xstate";
import type { invocationLogic } from "../../actors/invocation.ts";

export interface InflightInvocation {
  tenant: string;
  subject: string;
  capability: string;
  actor: Actor<typeof invocationLogic>;
}

/** A live stream as CANCEL sees it (runtime/flow/stream-session.ts holds the rest). */
export interface InflightStream {
  tenant: string;
  subject: string;
  capability: string;
  cancel(reason: string): void;
  /** Its flow control, for a stream this process runs (a stream handed to a worker has none here). */
  flow?(): StreamFlow;
}

/** Where a stream this process runs stands: its actor's state and its credits (docs/streaming.md). */
export interface StreamFlow {
  state: string;
  /** Frames it may still hand to its consumer before it must wait: the window less the frames in transit. */
  credit: number;
  window: number;
  /** Frames held now: in transit plus those the provider waits to emit. */
  held: number;
  /** Whether the provider is held for want of credit. */
  paused: boolean;
}

/**
 * A bounded memory of finished message ids: the oldest are forgotten first, a generation at a time. Ids
 * go into the young generation; when it holds `limit` it becomes the old one and the previous old one
 * is dropped whole, so at least the newest `limit` ids are remembered, and at most twice that many.
 * Nothing is deleted entry by entry: that needed an order array beside the Map and a delete per add,
 * and a V8 Map keeps deleted entries until it rehashes (docs/decisions.md, 'Finished ids live in two
 * generations of Maps').
 */
export class RecentlyFinished {
  private young = new Map<string, string>();
  private old = new Map<string, string>();

  constructor(private readonly limit = 10_000) {}

  add(messageId: string, tenant: string): void {
    if (this.young.size >= this.limit) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(messageId, tenant);
  }

  tenantOf(messageId: string): string | undefined {
    return this.young.get(messageId) ?? this.old.get(messageId);
  }
}

export class InflightTables {
  private readonly invocationTable = new Map<string, InflightInvocation>();
  private readonly streamTable = new Map<string, InflightStream>();
  private readonly tenantCounts = new Map<string, number>();
  private readonly finishedIds = new RecentlyFinished();

  /** Invocations in flight, by message id (read-only: see startInvocation, endInvocation). */
  get invocations(): ReadonlyMap<string, InflightInvocation> {
    return this.invocationTable;
  }

  /** Streams in flight, by the message id of their request (read-only: see startStream, endStream). */
  get streams(): ReadonlyMap<string, InflightStream> {
    return this.streamTable;
  }

  /** Whether `messageId` names an invocation or a stream in flight here. */
  has(messageId: string): boolean {
    return this.invocationTable.has(messageId) || this.streamTable.has(messageId);
  }

  /** How many invocations `tenant` has in flight here (its share of the capacity). */
  invocationsOf(tenant: string): number {
    return this.tenantCounts.get(tenant) ?? 0;
  }

  /** The tenant of a message id that finished lately, if it is still remembered. */
  finishedTenant(messageId: string): string | undefined {
    return this.finishedIds.tenantOf(messageId);
  }

  startInvocation(messageId: string, invocation: InflightInvocation): void {
    this.invocationTable.set(messageId, invocation);
    this.tenantCounts.set(invocation.tenant, this.invocationsOf(invocation.tenant) + 1);
  }

  /** The invocation has settled: out of the table, into the finished ids. */
  endInvocation(messageId: string, tenant: string): void {
    if (this.invocationTable.delete(messageId)) {
      const held = this.invocationsOf(tenant) - 1;
      if (held > 0) this.tenantCounts.set(tenant, held);
      else this.tenantCounts.delete(tenant);
    }
    this.finishedIds.add(messageId, tenant);
  }

  startStream(messageId: string, stream: InflightStream): void {
    this.streamTable.set(messageId, stream);
  }

  /**
   * `stream` has ended (a later stream with the same id is left alone). `finished`: whether it ran at all, so
   * that a CANCEL after it hears "already_completed".
   */
  endStream(messageId: string, stream: InflightStream, finished = true): void {
    if (this.streamTable.get(messageId) === stream) this.streamTable.delete(messageId);
    if (finished) this.finishedIds.add(messageId, stream.tenant);
  }
}
