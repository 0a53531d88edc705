// SUBSCRIBE: validates a subscription, places a JetStream consumer at the right sequence, and runs a supervised
// subscription actor whose pump (runtime/flow/subscription-pump.ts) moves events to the binding's sink. Every binding
// (SSE, NATS) hands in a sink and gets the same rules.
import { randomUUID } from "node:crypto";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { subscriptionMachine } from "../../actors/subscription.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import type { BindingType } from "../../schemas/types.ts";
import type { Bus } from "../bus/bus.ts";
import { ConsumerReaper } from "../bus/consumer-reaper.ts";

import type { EventSink, SubscriptionInfo, SubscriptionStats } from "../flow/event-sink.ts";
import { isNotFound, Pump } from "../flow/subscription-pump.ts";
import { replySubjectAllowed } from "../policy/policy.ts";
import { checkTenant } from "../protocol/names.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { type TopicRef, type TopicState, topicRef, unavailable } from "../store/events.ts";
import { authorizeTopic, type EventsCore, requestTopic } from "./publish.ts";
import { acceptRequest, optionalStringField } from "./request.ts";

// The bindings import a sink's types from here, SUBSCRIBE's entry point.
export type { EventSink, SubscriptionInfo } from "../flow/event-sink.ts";

export const DEFAULT_MAX_INFLIGHT = 256;
const ACK_WAIT_NS = 60_000 * 1_000_000;
/** An ephemeral consumer left behind by a dead runtime is removed by the server after this long. */
const EPHEMERAL_IDLE_NS = 60_000 * 1_000_000;
/** A durable consumer nobody has used for this long is removed by the server. */
const DURABLE_IDLE_NS = 7 * 24 * 3600 * 1000 * 1_000_000;

export interface Subscription {
  readonly info: SubscriptionInfo;
  readonly closed: Promise<void>;
  close(error?: MigError): void;
  stats(): SubscriptionStats;
  /** The newest sequence of its topic, read from JetStream: less `stats().last_sequence`, how far behind it is. */
  topicLast(): Promise<number>;
}

/** A non-negative integer given as a JSON number or as decimal digits (HTTP query, Last-Event-ID). */
export function parseCursor(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const number = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0) {
    const shown = typeof value === "string" ? `"${value.slice(0, 40)}"` : JSON.stringify(value)?.slice(0, 40);
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${field} must be a non-negative integer (a topic sequence), got ${shown}`,
    );
  }
  return number;
}

function parseMaxInflight(value: unknown, limit: number): number {
  if (value === undefined || value === null || value === "") return Math.min(DEFAULT_MAX_INFLIGHT, limit);
  const number = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isInteger(number) || number < 1 || number > limit) {
    const shown = typeof value === "string" ? `"${value.slice(0, 40)}"` : JSON.stringify(value)?.slice(0, 40);
    throw new MigError("MIG_INVALID_REQUEST", `max_inflight must be an integer between 1 and ${limit}, got ${shown}`, {
      details: { max_inflight_limit: limit },
    });
  }
  return number;
}

/** Open subscriptions of this process; a durable consumer_id has at most one, the newest. */
export class SubscriptionRegistry {
  private readonly open = new Map<string, Subscription>();
  private readonly durable = new Map<string, Subscription>();
  private reaping: ConsumerReaper | undefined;

  /** Deletes the consumers of ended ephemeral subscriptions, a few at a time (runtime/bus/consumer-reaper.ts). */
  reaper(bus: Bus): ConsumerReaper {
    return (this.reaping ??= new ConsumerReaper(() => bus.jsm));
  }

  get size(): number {
    return this.open.size;
  }

  list(): Subscription[] {
    return [...this.open.values()];
  }

  add(subscription: Subscription, durableKey: string | undefined): void {
    this.open.set(subscription.info.subscription_id, subscription);
    if (durableKey !== undefined) this.durable.set(durableKey, subscription);
    void subscription.closed.then(() => {
      this.open.delete(subscription.info.subscription_id);
      if (durableKey !== undefined && this.durable.get(durableKey) === subscription) this.durable.delete(durableKey);
    });
  }

  /** Closes the subscription that holds a durable consumer, so that a reconnecting subscriber takes it over. */
  async takeOver(durableKey: string): Promise<void> {
    const previous = this.durable.get(durableKey);
    if (!previous) return;
    previous.close(
      new MigError("MIG_UNAVAILABLE", "another connection took over this consumer_id", { retryable: false }),
    );
    await previous.closed;
  }

  closeAll(reason: string): Promise<void> {
    const all = this.list();
    for (const s of all) s.close(new MigError("MIG_UNAVAILABLE", reason));
    return Promise.all(all.map((s) => s.closed)).then(() => undefined);
  }
}

export interface SubscribeCore extends EventsCore {
  bus: Bus;
  subscriptions: SubscriptionRegistry;
}

export async function subscribe(
  core: SubscribeCore,
  body: unknown,
  request: RequestContext,
  pathTopic: string | undefined,
  sink: EventSink,
): Promise<Subscription> {
  const { raw, header } = acceptRequest(core, body, request);
  const topic = requestTopic(raw, pathTopic);
  authorizeTopic(core, request.principal, topic);
  if (sink.destination !== undefined && !replySubjectAllowed(sink.destination, header.tenant_id)) {
    // The runtime may publish anywhere on the bus: a caller must not pick an internal or another tenant's subject.
    throw new MigError(
      "MIG_FORBIDDEN",
      `deliver_subject must be an inbox (_INBOX.… or _INBOX_${header.tenant_id}.…), not "${sink.destination.slice(0, 100)}"`,
    );
  }
  const consumerId = optionalStringField(raw, "consumer_id", 1024);
  if (consumerId !== undefined) checkTenant(consumerId, "consumer_id");
  const explicitCursor = parseCursor(raw.resume_cursor, "resume_cursor");
  const maxInflight = parseMaxInflight(raw.max_inflight, core.config.maxInflightLimit);

  const ref = topicRef(header.tenant_id, topic);
  const state = await core.events.state(ref);
  // An explicit cursor is checked before anything changes, so a refused request leaves an open one alone.
  if (explicitCursor !== undefined) checkCursor(core, topic, explicitCursor, state);

  const durableKey = consumerId === undefined ? undefined : `${ref.stream}/${consumerId}`;
  if (durableKey !== undefined) await core.subscriptions.takeOver(durableKey);
  let cursor = explicitCursor;
  if (cursor === undefined && consumerId !== undefined) {
    // A durable consumer continues after the last event it acknowledged.
    try {
      const known = await core.bus.jsm.consumers.info(ref.stream, consumerId);
      cursor = Math.min(known.ack_floor.stream_seq, state.last);
      checkCursor(core, topic, cursor, state);
    } catch (err) {
      if (err instanceof MigError) throw err;
      if (!isNotFound(err)) throw unavailable("reading the durable consumer", err);
    }
  }
  // Without a cursor a new subscription starts live: only events published after it.
  cursor ??= state.last;

  const place = (start: number) => placeConsumer(core, ref, topic, consumerId, start, maxInflight);
  const consumerName = await place(cursor + 1);

  const info: SubscriptionInfo = {
    header,
    subscription_id: randomUUID(),
    topic,
    consumer_id: consumerId,
    start_sequence: cursor + 1,
    replay_until: state.last,
    max_inflight: maxInflight,
  };
  const subscription = startActor(core, ref, consumerName, place, sink, info, request.binding);
  core.subscriptions.add(subscription, durableKey);
  return subscription;
}

/** A cursor must lie within the topic, and no further back than one subscription may replay. */
function checkCursor(core: SubscribeCore, topic: string, cursor: number, state: TopicState): void {
  if (cursor > state.last) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `resume_cursor ${cursor} is past the end of topic ${topic}, whose last sequence is ${state.last}`,
      {
        details: { resume_cursor: cursor, last_sequence: state.last },
      },
    );
  }
  const max = core.config.replayMaxEvents;
  const behind = state.last - Math.max(cursor, state.first > 0 ? state.first - 1 : 0);
  if (behind > max) {
    throw new MigError(
      "MIG_RATE_LIMITED",
      `resume_cursor ${cursor} would replay ${behind} events of topic ${topic}; one subscription may replay at most ${max}`,
      {
        retryable: false,
        details: { replay_max_events: max, oldest_allowed_cursor: state.last - max, last_sequence: state.last },
      },
    );
  }
}

/** Creates the subscription's consumer at `start` (a durable one replaces its earlier self); resolves with its name. */
async function placeConsumer(
  core: SubscribeCore,
  ref: TopicRef,
  topic: string,
  consumerId: string | undefined,
  start: number,
  maxInflight: number,
): Promise<string> {
  const { jsm } = core.bus;
  try {
    if (consumerId !== undefined) {
      await jsm.consumers.delete(ref.stream, consumerId).catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
    }
    const created = await jsm.consumers.add(ref.stream, {
      ...(consumerId !== undefined ? { durable_name: consumerId } : {}),
      description: `MIG subscription to ${topic}`,
      // One ack covers every event up to it: the pump acknowledges a batch, not each event (docs/events.md).
      ack_policy: AckPolicy.All,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: start,
      max_ack_pending: maxInflight,
      ack_wait: ACK_WAIT_NS,
      max_deliver: -1,
      inactive_threshold: consumerId !== undefined ? DURABLE_IDLE_NS : EPHEMERAL_IDLE_NS,
    });
    return created.name;
  } catch (err) {
    throw unavailable("creating the subscription's consumer", err);
  }
}

function startActor(
  core: SubscribeCore,
  ref: TopicRef,
  consumerName: string,
  place: (start: number) => Promise<string>,
  sink: EventSink,
  info: SubscriptionInfo,
  binding: BindingType,
): Subscription {
  const label = {
    tenant: ref.tenant,
    topic: ref.topic,
    consumer: info.consumer_id ?? `ephemeral-${info.subscription_id.slice(0, 8)}`,
  };
  const pump = new Pump(core, ref, consumerName, place, sink, info, label, binding);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let finished = false;
  const finish = (error: MigError | undefined) => {
    if (finished) return;
    finished = true;
    pump.stop();
    sink.close(error);
    core.metrics.subscriptionsActive.dec({ binding });
    core.metrics.subscriptionLag.remove(label);
    core.metrics.subscriptionBuffered.remove(label);
    if (info.consumer_id === undefined) {
      // An ephemeral consumer has no future: remove it soon rather than after its idle threshold.
      core.subscriptions.reaper(core.bus).delete(ref.stream, pump.consumerName);
      resolveClosed();
    } else {
      // Closed once JetStream has the last ack: a takeover or a reconnect reads the durable's ack floor after this.
      void pump.settle().then(resolveClosed);
    }
  };

  core.metrics.subscriptionsActive.inc({ binding });
  sink.open(info);
  const actor = core.supervisor.spawn(
    "subscription",
    subscriptionMachine,
    { replaying: info.start_sequence <= info.replay_until, pump },
    (error) => finish(toMigError(error, "the subscription failed inside the runtime")),
    (event) => finish(event.error),
  );
  return {
    info,
    closed,
    close: (error?: MigError) => {
      if (actor.getSnapshot().status === "active") actor.send(error ? { type: "CLOSE", error } : { type: "CLOSE" });
      else finish(error);
    },
    stats: () => ({ ...pump.stats, state: stateOf(actor.getSnapshot().value) }),
    topicLast: async () => (await core.events.state(ref)).last,
  };
}

function stateOf(value: unknown): string {
  if (typeof value === "string") return value;
  const open = (value as { open?: unknown }).open;
  return typeof open === "string" ? open : "unknown";
}
