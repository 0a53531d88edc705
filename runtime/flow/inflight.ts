// The work in flight in this process as CANCEL sees it (invocations and streams, by message id) and the ids that
// finished lately, so that a late CANCEL can say "already_completed".
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
  cancel(reason: string): void;
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
