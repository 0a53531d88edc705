// A gateway's inbox for what workers send back about its requests in flight: one wildcard subscription on
// `_MIG.sgw.<unique>.*`, each request answered on a token of its own, so that thousands of streams in flight cost
// one subscription. A message for a token no longer held (late, or a duplicate) is counted and dropped.
import { type Msg, nuid } from "@nats-io/transport-node";
import { INTERNAL_PREFIX } from "../protocol/provider-protocol.ts";
import type { FleetHost } from "./fleet-host.ts";

export class ReplyInbox<T> {
  private readonly prefix = `${INTERNAL_PREFIX}.sgw.${nuid.next()}`;
  private readonly held = new Map<string, T>();
  private seq = 0;

  constructor(host: FleetHost, onMessage: (item: T, token: string, msg: Msg) => void) {
    host.bus.nc.subscribe(`${this.prefix}.*`, {
      callback: (err, msg) => {
        if (err) return;
        const token = msg.subject.slice(this.prefix.length + 1);
        const item = this.held.get(token);
        if (item === undefined) host.metrics.providerReplies.inc({ reason: "late_or_duplicate" });
        else onMessage(item, token, msg);
      },
    });
  }

  /** Holds `item` under a fresh token; the subject is where what concerns it arrives. */
  hold(item: T): { token: string; subject: string } {
    const token = (++this.seq).toString(36);
    this.held.set(token, item);
    return { token, subject: `${this.prefix}.${token}` };
  }

  get(token: string): T | undefined {
    return this.held.get(token);
  }

  release(token: string): void {
    this.held.delete(token);
  }

  entries(): IterableIterator<[string, T]> {
    return this.held.entries();
  }
}

/** The one `T` of a runtime (kept in `table`), made by `make` when first asked for. */
export function perHost<T extends object>(table: WeakMap<FleetHost, T>, host: FleetHost, make: () => T): T {
  let it = table.get(host);
  if (!it) table.set(host, (it = make()));
  return it;
}
