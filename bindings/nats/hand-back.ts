// A gateway's side of the direct lane's hand-backs: the invokes it left to direct-lane workers are remembered for a
// moment, so that one a worker declines (received before its lane's instant, or while it leaves; worker/direct-lane.ts)
// is answered here, once, instead of by nobody. docs/bindings/provider-protocol.md §9.
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { DECLINED_SUBJECT, type DeclinedNotice } from "../../runtime/mod.ts";

/**
 * How many left invokes, and how many hand-backs that came first, are remembered: a fixed ring each, so the cost
 * is one store per left invoke, and a hand-back finds its request as long as it comes within this many invokes.
 */
const REMEMBERED = 4096;

export class HandBack {
  /** The invokes this gateway left to the workers, newest last (a ring). */
  private readonly left: (Msg | undefined)[] = new Array(REMEMBERED);
  private next = 0;
  /** Reply subjects handed back before this gateway received its copy of the request (a ring, and a set of it). */
  private readonly early: (string | undefined)[] = new Array(REMEMBERED);
  private readonly earlySet = new Set<string>();
  private nextEarly = 0;
  private readonly subscription: Subscription;

  constructor(
    nc: NatsConnection,
    /** Answers a request as if this gateway had taken it in the first place. */
    private readonly take: (msg: Msg) => void,
  ) {
    this.subscription = nc.subscribe(DECLINED_SUBJECT, {
      callback: (err, msg) => {
        if (err) return;
        let notice: DeclinedNotice;
        try {
          notice = msg.json<DeclinedNotice>();
        } catch {
          return;
        }
        if (notice !== null && typeof notice === "object" && typeof notice.reply === "string")
          this.handedBack(notice.reply);
      },
    });
  }

  /** A request this gateway leaves to the workers; answered now if a worker has already handed it back. */
  leave(msg: Msg): void {
    if (this.earlySet.size > 0 && msg.reply !== undefined && this.earlySet.delete(msg.reply)) {
      this.take(msg);
      return;
    }
    this.left[this.next] = msg;
    this.next = (this.next + 1) % REMEMBERED;
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  private handedBack(reply: string): void {
    // Newest first: a hand-back follows its request closely.
    for (let k = 1; k <= REMEMBERED; k++) {
      const i = (this.next - k + REMEMBERED) % REMEMBERED;
      const msg = this.left[i];
      if (msg === undefined) break;
      if (msg.reply !== reply) continue;
      this.left[i] = DONE;
      this.take(msg);
      return;
    }
    // Not received yet (or long gone): answered when it comes, if it comes soon.
    const evicted = this.early[this.nextEarly];
    if (evicted !== undefined) this.earlySet.delete(evicted);
    this.early[this.nextEarly] = reply;
    this.earlySet.add(reply);
    this.nextEarly = (this.nextEarly + 1) % REMEMBERED;
  }
}

/** A taken entry of the ring: no reply subject matches it, and it does not end the search as an empty slot does. */
const DONE = { reply: "" } as Msg;
