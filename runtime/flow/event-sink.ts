// What a subscription hands its binding's sink and reports about itself: the types SUBSCRIBE (runtime/ops/subscribe.ts)
// and the pump (runtime/flow/subscription-pump.ts) share, kept here so the lower layer needs nothing from runtime/ops/.
import type { MigError } from "../../schemas/errors.ts";
import type { MessageHeader } from "../../schemas/types.ts";

/** Where a subscription's events go; each binding implements one. */
export interface EventSink {
  /** Called once the consumer is in place, before any event. */
  open(info: SubscriptionInfo): void;
  /** Writes one EventMessage (JSON); false means the transport is full: wait for `drained()` before the next. */
  event(sequence: number, json: string): boolean;
  /**
   * Sends what `event` gathered, if the sink gathers (SSE writes a batch as one chunk); the pump calls it before it
   * acknowledges the batch and waits. False as for `event`.
   */
  flush?(): boolean;
  /** Lifecycle notices the subscriber can see (SSE comment frames). */
  notice(kind: "live" | "paused" | "resumed" | "dead_lettered", detail: Record<string, string | number>): void;
  /** Resolves when the transport can take more, or when it closed. */
  drained(): Promise<void>;
  /**
   * For a transport that loses what was in flight when the runtime's bus connection fails over (NATS delivery is
   * a publish): called once the connection is back, returns the last sequence the subscriber confirmed (its acks),
   * after which the pump sends every event again, and forgets what it had sent beyond it.
   */
  rewind?(): number;
  /** Ends the transport side, with the error that ended the subscription if any. */
  close(error: MigError | undefined): void;
  /** Bytes the transport holds and has not yet sent. */
  readonly bufferedBytes: number;
  /** The bus subject the events are published to, when the binding delivers on the bus (NATS `deliver_subject`). */
  readonly destination?: string;
}

export interface SubscriptionInfo {
  header: MessageHeader;
  subscription_id: string;
  topic: string;
  consumer_id: string | undefined;
  /** The first sequence this subscription will deliver. */
  start_sequence: number;
  /** Events up to this sequence are delivered with replay: true; later ones are live. */
  replay_until: number;
  max_inflight: number;
}

export interface SubscriptionStats {
  state: string;
  last_sequence: number;
  delivered: number;
  /** Most events ever held by the runtime for this subscription at once (fetched, not yet written). */
  max_buffered_events: number;
  /** Most bytes ever held by the transport for this subscription at once. */
  max_buffered_bytes: number;
  pauses: number;
}
