// SUBSCRIBE: validates a subscription, places a JetStream consumer at the right sequence, and runs a supervised
// subscription actor whose pump moves events to the binding's sink with backpressure, replay quotas and
// dead-lettering. Every binding (SSE, NATS) hands in a sink and gets the same rules.
import { randomUUID } from "node:crypto";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { createInbox, type Msg, type Subscription as NatsSubscription } from "@nats-io/transport-node";
import { subscriptionMachine, type SubscriptionEvent, type SubscriptionPump } from "../actors/subscription.ts";
import { MigError, toMigError } from "./errors.ts";
import { deliveredJson, topicRef, unavailable, type TopicRef, type TopicState } from "./events.ts";
import { acceptHeader } from "./header.ts";
import { checkTenant } from "./names.ts";
import { transportTenant } from "./policy.ts";
import { authorizeTopic, requestTopic, type EventsCore } from "./publish.ts";
import { optionalStringField, requireObject } from "./request.ts";
import type { Bus } from "./bus.ts";
import type { RequestContext } from "./core.ts";
import type { BindingType, MessageHeader } from "./types.ts";

export const DEFAULT_MAX_INFLIGHT = 256;
/** Events asked for per pull request at most; held plus asked-for never exceeds max_inflight. */
const MAX_BATCH = 512;
const FETCH_EXPIRES_MS = 5_000;
const ACK_WAIT_NS = 60_000 * 1_000_000;
/** An ephemeral consumer left behind by a dead runtime is removed by the server after this long. */
const EPHEMERAL_IDLE_NS = 60_000 * 1_000_000;
/** A durable consumer nobody has used for this long is removed by the server. */
const DURABLE_IDLE_NS = 7 * 24 * 3600 * 1000 * 1_000_000;
const STORED_PREFIX = '{"header":';

/** Where a subscription's events go; each binding implements one. */
export interface EventSink {
  /** Called once the consumer is in place, before any event. */
  open(info: SubscriptionInfo): void;
  /** Writes one EventMessage (JSON); false means the transport is full: wait for `drained()` before the next. */
  event(sequence: number, json: string): boolean;
  /** Lifecycle notices the subscriber can see (SSE comment frames). */
  notice(kind: "live" | "paused" | "resumed" | "dead_lettered", detail: Record<string, string | number>): void;
  /** Resolves when the transport can take more, or when it closed. */
  drained(): Promise<void>;
  /** Ends the transport side, with the error that ended the subscription if any. */
  close(error: MigError | undefined): void;
  /** Bytes the transport holds and has not yet sent. */
  readonly bufferedBytes: number;
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

export interface Subscription {
  readonly info: SubscriptionInfo;
  readonly closed: Promise<void>;
  close(error?: MigError): void;
  stats(): SubscriptionStats;
}

/** A non-negative integer given as a JSON number or as decimal digits (HTTP query, Last-Event-ID). */
export function parseCursor(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const number = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  if (typeof number !== "number" || !Number.isSafeInteger(number) || number < 0) {
    const shown = typeof value === "string" ? `"${value.slice(0, 40)}"` : JSON.stringify(value)?.slice(0, 40);
    throw new MigError("MIG_INVALID_REQUEST", `${field} must be a non-negative integer (a topic sequence), got ${shown}`);
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

function isNotFound(err: unknown): boolean {
  return /not found/i.test(err instanceof Error ? err.message : String(err));
}

/** Open subscriptions of this process; a durable consumer_id has at most one, the newest. */
export class SubscriptionRegistry {
  private readonly open = new Map<string, Subscription>();
  private readonly durable = new Map<string, Subscription>();

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
    previous.close(new MigError("MIG_UNAVAILABLE", "another connection took over this consumer_id", { retryable: false }));
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
  const raw = requireObject(body);
  const header = acceptHeader(raw, {
    transportTenant: transportTenant(request.principal, request.tenant),
    maxDeadlineMs: core.config.maxDeadlineMs,
  });
  const topic = requestTopic(raw, pathTopic);
  authorizeTopic(core, request.principal, topic);
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
    throw new MigError("MIG_INVALID_REQUEST", `resume_cursor ${cursor} is past the end of topic ${topic}, whose last sequence is ${state.last}`, {
      details: { resume_cursor: cursor, last_sequence: state.last },
    });
  }
  const max = core.config.replayMaxEvents;
  const behind = state.last - Math.max(cursor, state.first > 0 ? state.first - 1 : 0);
  if (behind > max) {
    throw new MigError("MIG_RATE_LIMITED", `resume_cursor ${cursor} would replay ${behind} events of topic ${topic}; one subscription may replay at most ${max}`, {
      retryable: false,
      details: { replay_max_events: max, oldest_allowed_cursor: state.last - max, last_sequence: state.last },
    });
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
      ack_policy: AckPolicy.Explicit,
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
  const label = { tenant: ref.tenant, topic: ref.topic, consumer: info.consumer_id ?? `ephemeral-${info.subscription_id.slice(0, 8)}` };
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
    // An ephemeral consumer has no future: remove it now rather than after its idle threshold.
    if (info.consumer_id === undefined) core.bus.jsm.consumers.delete(ref.stream, pump.consumerName).catch(() => undefined);
    resolveClosed();
  };

  core.metrics.subscriptionsActive.inc({ binding });
  sink.open(info);
  const actor = core.supervisor.spawn(
    "subscription",
    subscriptionMachine,
    { replaying: info.start_sequence <= info.replay_until, pump, closed: finish },
    (error) => finish(toMigError(error, "the subscription failed inside the runtime")),
  );
  return {
    info,
    closed,
    close: (error?: MigError) => {
      if (actor.getSnapshot().status === "active") actor.send(error ? { type: "CLOSE", error } : { type: "CLOSE" });
      else finish(error);
    },
    stats: () => ({ ...pump.stats, state: stateOf(actor.getSnapshot().value) }),
  };
}

function stateOf(value: unknown): string {
  if (typeof value === "string") return value;
  const open = (value as { open?: unknown }).open;
  return typeof open === "string" ? open : "unknown";
}

/** A token bucket for replayed events; rate 0 means unthrottled. */
class Throttle {
  private tokens: number;
  private at = Date.now();

  constructor(private readonly rate: number) {
    this.tokens = rate / 10;
  }

  /** Takes one token: undefined when one is there now, else a promise that resolves once one is. */
  take(): Promise<void> | undefined {
    if (this.rate === 0 || this.tryTake()) return undefined;
    return (async () => {
      while (!this.tryTake()) {
        await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(((1 - this.tokens) / this.rate) * 1000))));
      }
    })();
  }

  private tryTake(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.rate / 10, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const ACK = new TextEncoder().encode("+ACK");
const TERM = new TextEncoder().encode("+TERM");

/** What the pump needs of a delivered JetStream message, read from its `$JS.ACK…` reply subject. */
interface Delivery {
  msg: Msg;
  seq: number;
  deliveryCount: number;
  pending: number;
}

/** `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, with domain and account hash on newer servers. */
function parseDelivery(msg: Msg): Delivery | undefined {
  const reply = msg.reply;
  if (!reply || !reply.startsWith("$JS.ACK.")) return undefined;
  const t = reply.split(".");
  const base = t.length === 9 ? 4 : 6;
  if (t.length < 9) return undefined;
  return { msg, deliveryCount: Number(t[base]), seq: Number(t[base + 1]), pending: Number(t[base + 3]) };
}

/**
 * Moves events from the consumer to the sink. It pulls from JetStream itself (one pull request at a time, into
 * its own queue) so that what it holds is bounded by max_inflight and nothing it holds is ever dropped: while
 * the sink is full it stops pulling, and JetStream's max_ack_pending stops the server side.
 */
class Pump implements SubscriptionPump {
  readonly stats: Omit<SubscriptionStats, "state">;
  private stopped = false;
  private caughtUp: boolean;
  private readonly queue: Delivery[] = [];
  private outstanding = 0;
  private pullTimer: NodeJS.Timeout | undefined;
  private wakeUp: (() => void) | undefined;
  private inbox: NatsSubscription | undefined;
  private failedPulls = 0;
  private pending = 0;
  private unreportedReplays = 0;
  private recovering = false;
  private report: ((event: SubscriptionEvent) => void) | undefined;
  private readonly batch: number;
  private readonly throttle: Throttle;
  private readonly lag;
  private readonly buffered;
  private readonly replayed;

  constructor(
    private readonly core: SubscribeCore,
    private readonly ref: TopicRef,
    public consumerName: string,
    private readonly place: (start: number) => Promise<string>,
    private readonly sink: EventSink,
    private readonly info: SubscriptionInfo,
    label: { tenant: string; topic: string; consumer: string },
    private readonly binding: BindingType,
  ) {
    this.stats = { last_sequence: info.start_sequence - 1, delivered: 0, max_buffered_events: 0, max_buffered_bytes: 0, pauses: 0 };
    this.caughtUp = info.start_sequence > info.replay_until;
    this.batch = Math.min(info.max_inflight, MAX_BATCH);
    this.throttle = new Throttle(core.config.replayRatePerSec);
    this.lag = core.metrics.subscriptionLag.labels(label);
    this.buffered = core.metrics.subscriptionBuffered.labels(label);
    this.replayed = core.metrics.eventsReplayed.labels({ tenant: ref.tenant, topic: ref.topic });
  }

  run(report: (event: SubscriptionEvent) => void): void {
    this.report = report;
    this.loop(report).catch((err: unknown) => {
      if (!this.stopped) report({ type: "CLOSE", error: err instanceof MigError ? err : unavailable("delivering events", err) });
    });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.flushMetrics();
    clearTimeout(this.pullTimer);
    this.inbox?.unsubscribe();
    this.wake();
  }

  private wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  private onMessage(msg: Msg): void {
    const delivery = parseDelivery(msg);
    if (delivery === undefined) {
      // A status message: 408 (pull expired), 404/409 (nothing more for this pull); 100 (heartbeat) is ignored.
      const code = msg.headers?.code ?? 0;
      if (code === 408) this.pullDone();
      else if (code >= 400) {
        // Something else ended the pull: ask again after a pause; if it keeps failing, look at the consumer.
        clearTimeout(this.pullTimer);
        this.pullTimer = setTimeout(() => this.pullDone(), 250);
        const deleted = /deleted/i.test(msg.headers?.description ?? "");
        if (deleted || ++this.failedPulls >= 3) void this.recover();
      }
      return;
    }
    this.failedPulls = 0;
    this.queue.push(delivery);
    if (this.queue.length > this.stats.max_buffered_events) this.stats.max_buffered_events = this.queue.length;
    if (this.outstanding > 0 && --this.outstanding === 0) this.pullDone();
    this.wake();
  }

  /**
   * The consumer is gone (deleted by an operator, its idle threshold passed while the bus was away, or the
   * server lost its state): place a new one right after the last event delivered, so nothing is lost or doubled.
   */
  private async recover(): Promise<void> {
    if (this.recovering || this.stopped) return;
    this.recovering = true;
    try {
      try {
        await this.core.bus.jsm.consumers.info(this.ref.stream, this.consumerName);
        return; // It exists: the failures were something else (e.g. the bus restarting), and pulls go on.
      } catch (err) {
        if (!isNotFound(err)) return;
      }
      this.consumerName = await this.place(this.stats.last_sequence + 1);
      this.failedPulls = 0;
      this.pullDone(); // Pull from the new consumer now rather than after the old pull's timer.
      this.core.logger.info({ topic: this.ref.topic, consumer: this.consumerName, from: this.stats.last_sequence + 1 }, "subscription consumer recreated");
    } catch (err) {
      this.report?.({ type: "CLOSE", error: err instanceof MigError ? err : unavailable("recreating the subscription's consumer", err) });
    } finally {
      this.recovering = false;
    }
  }

  private pullDone(): void {
    this.outstanding = 0;
    clearTimeout(this.pullTimer);
    this.wake();
  }

  /** Asks for more only when the pump holds little: held + requested never exceeds max_inflight. */
  private maybePull(): void {
    if (this.stopped || this.outstanding > 0) return;
    const room = this.info.max_inflight - this.queue.length;
    if (room < Math.max(1, this.batch >> 1)) return;
    const count = Math.min(this.batch, room);
    const { nc } = this.core.bus;
    this.outstanding = count;
    try {
      nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.ref.stream}.${this.consumerName}`, JSON.stringify({ batch: count, expires: FETCH_EXPIRES_MS * 1_000_000 }), {
        reply: this.inbox!.getSubject(),
      });
    } catch {
      // Disconnected: the timer below asks again.
    }
    // A pull lost to a bus restart, or sent to a consumer that no longer exists, never completes: give up on it a
    // little after it would have expired, and make sure the consumer is still there.
    this.pullTimer = setTimeout(() => {
      this.pullDone();
      void this.recover();
    }, FETCH_EXPIRES_MS + 2_000);
  }

  private async loop(report: (event: SubscriptionEvent) => void): Promise<void> {
    this.inbox = this.core.bus.nc.subscribe(createInbox(), { callback: (_err, msg) => this.onMessage(msg) });
    if (this.caughtUp) this.sink.notice("live", { after_sequence: this.info.replay_until });
    while (!this.stopped) {
      this.maybePull();
      const next = this.queue.shift();
      if (next === undefined) {
        this.flushMetrics();
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        continue;
      }
      // Most events are written synchronously; only a pause, the throttle or a dead letter makes the pump wait.
      const wait = this.deliver(next, report);
      if (wait) await wait;
    }
  }

  private deliver(d: Delivery, report: (event: SubscriptionEvent) => void): Promise<void> | undefined {
    const { seq, msg } = d;
    const { nc } = this.core.bus;
    if (seq <= this.stats.last_sequence) {
      nc.publish(msg.reply!, ACK); // A redelivery of an event already written.
      return;
    }
    const stored = msg.string();
    const poison = !stored.startsWith(STORED_PREFIX) || !stored.endsWith("}")
      ? "the stored event is not a MIG event"
      : d.deliveryCount > this.core.config.deadLetterAfter
        ? `delivery failed ${d.deliveryCount - 1} times`
        : undefined;
    if (poison !== undefined) return this.deadLetter(d, poison, report);
    const replay = seq <= this.info.replay_until;
    const throttled = replay ? this.throttle.take() : undefined;
    if (throttled) return throttled.then(() => (this.stopped ? undefined : this.write(d, stored, replay, report)));
    return this.write(d, stored, replay, report);
  }

  private write(d: Delivery, stored: string, replay: boolean, report: (event: SubscriptionEvent) => void): Promise<void> | undefined {
    const { seq, msg } = d;
    const { nc } = this.core.bus;
    const json = deliveredJson(stored, seq, replay);
    let ok = true;
    let failure: unknown;
    // The transport may refuse one event (e.g. larger than a NATS server's max_payload): try it a few times
    // in place, so order holds, then dead-letter it and go on.
    for (let attempt = 1; attempt <= this.core.config.deadLetterAfter; attempt++) {
      try {
        ok = this.sink.event(seq, json);
        failure = undefined;
        break;
      } catch (err) {
        failure = err;
      }
    }
    if (failure !== undefined) {
      const why = failure instanceof Error ? failure.message : String(failure);
      return this.deadLetter(d, `the subscriber's transport refused it ${this.core.config.deadLetterAfter} times: ${why}`, report);
    }
    nc.publish(msg.reply!, ACK);
    this.stats.last_sequence = seq;
    this.stats.delivered++;
    if (replay) this.unreportedReplays++;
    this.pending = d.pending;
    const bytes = this.sink.bufferedBytes;
    if (bytes > this.stats.max_buffered_bytes) this.stats.max_buffered_bytes = bytes;
    this.checkSeam(seq, report);
    return ok ? undefined : this.pause(seq, report);
  }

  /** Metrics are brought up to date when the pump waits, not per event (a labelled update hashes its labels). */
  private flushMetrics(): void {
    this.lag.set(this.pending);
    this.buffered.set(this.queue.length);
    if (this.unreportedReplays > 0) {
      this.replayed.inc(this.unreportedReplays);
      this.unreportedReplays = 0;
    }
  }

  /** The sink is full: stop pulling and writing until it drains. */
  private async pause(seq: number, report: (event: SubscriptionEvent) => void): Promise<void> {
    this.flushMetrics();
    this.stats.pauses++;
    this.core.metrics.subscriptionPauses.inc({ binding: this.binding });
    report({ type: "PAUSE" });
    this.sink.notice("paused", { after_sequence: seq, buffered_bytes: this.sink.bufferedBytes });
    await this.sink.drained();
    if (this.stopped) return;
    this.sink.notice("resumed", { after_sequence: seq });
    report({ type: "RESUME" });
  }

  private async deadLetter(d: Delivery, reason: string, report: (event: SubscriptionEvent) => void): Promise<void> {
    await this.core.events.deadLetter(this.ref, d.msg.data, d.seq, reason);
    this.core.bus.nc.publish(d.msg.reply!, TERM);
    this.core.metrics.eventsDeadLettered.inc({ tenant: this.ref.tenant, topic: this.ref.topic });
    this.stats.last_sequence = d.seq;
    this.sink.notice("dead_lettered", { sequence: d.seq });
    this.checkSeam(d.seq, report);
  }

  private checkSeam(seq: number, report: (event: SubscriptionEvent) => void): void {
    if (this.caughtUp || seq < this.info.replay_until) return;
    this.caughtUp = true;
    report({ type: "LIVE" });
    this.sink.notice("live", { after_sequence: this.info.replay_until });
  }
}
