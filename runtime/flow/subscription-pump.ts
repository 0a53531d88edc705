// The pump of a subscription: pulls events from its JetStream consumer into a bounded queue of its own and writes
// them to the binding's sink, pausing while the sink is full, throttling replay, dead-lettering poison events, and
// placing a new consumer if its consumer disappears.

import { createInbox, type Msg, type Subscription as NatsSubscription } from "@nats-io/transport-node";
import type { SubscriptionEvent, SubscriptionPump } from "../../actors/subscription.ts";
import { MigError } from "../../schemas/errors.ts";
import type { BindingType } from "../../schemas/types.ts";
import type { RuntimeConfig } from "../base/config.ts";
import type { Logger } from "../base/logger.ts";
import type { Metrics } from "../base/metrics.ts";
import { endSpan, tracing } from "../base/tracing.ts";
import type { Bus } from "../bus/bus.ts";
import { ACK, readAckSubject, requestBatch, TERM } from "../bus/jetstream-wire.ts";
import { deliveredJson, type EventStore, type TopicRef, unavailable } from "../store/events.ts";
import { startDeliverySpan } from "./delivery-span.ts";
import type { EventSink, SubscriptionInfo, SubscriptionStats } from "./event-sink.ts";

/** Events asked for per pull request at most; held plus asked-for never exceeds max_inflight. */
const MAX_BATCH = 512;
/**
 * A pull waits this long for events, doubling after each pull that expired empty up to MAX_FETCH_EXPIRES_MS,
 * and back to the start at the next event: 10,000 idle subscriptions then cost ~330 pulls a second, not
 * 2,000 (measured: a fifth of a core in the runtime and a quarter in nats-server at 5 s). A pull lost to
 * a bus restart is asked again at the reconnect, not at the end of its wait.
 */
const FETCH_EXPIRES_MS = 5_000;
const MAX_FETCH_EXPIRES_MS = 30_000;
/** How often a paused subscription's lag is read from its topic (one JetStream API request per paused subscription). */
const PAUSED_LAG_REFRESH_MS = 5_000;

/** Every stored event body starts so (runtime/ops/publish.ts); anything else on a topic's subject is poison. */
const STORED_PREFIX = '{"header":';

/** What the pump uses of the runtime; SUBSCRIBE's core (SubscribeCore in runtime/ops/subscribe.ts) has all of it. */
export interface PumpCore {
  config: Pick<RuntimeConfig, "replayRatePerSec" | "deadLetterAfter">;
  metrics: Pick<
    Metrics,
    "subscriptionLag" | "subscriptionBuffered" | "eventsReplayed" | "subscriptionPauses" | "eventsDeadLettered"
  >;
  bus: Pick<Bus, "nc" | "jsm" | "onReconnect">;
  logger: Pick<Logger, "info">;
  events: Pick<EventStore, "deadLetter" | "state">;
}

/** JetStream's "consumer not found" / "stream not found" (a timeout or no responders is not that). */
export function isNotFound(err: unknown): boolean {
  return /not found/i.test(err instanceof Error ? err.message : String(err));
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

/** Resolves false in the check phase of the event loop, after the current tick's and I/O callbacks. */
function nextPhase(): Promise<false> {
  return new Promise((resolve) => setImmediate(() => resolve(false)));
}

/** How long a stopping durable subscription waits for JetStream to confirm its last ack. */
const FINAL_ACK_TIMEOUT_MS = 2_000;

/** What the pump needs of a delivered JetStream message, read from its `$JS.ACK…` reply subject. */
interface Delivery {
  msg: Msg;
  consumer: string;
  seq: number;
  deliveryCount: number;
  pending: number;
}

/** The delivery `msg` is, read from its reply subject. */
function parseDelivery(msg: Msg): Delivery | undefined {
  const ack = readAckSubject(msg.reply);
  return ack && { msg, ...ack };
}

/**
 * Moves events from the consumer to the sink. It pulls from JetStream itself (one pull request at a time, into
 * its own queue) so that what it holds is bounded by max_inflight and nothing it holds is ever dropped: while
 * the sink is full it stops pulling, and JetStream's max_ack_pending stops the server side.
 */
export class Pump implements SubscriptionPump {
  readonly stats: Omit<SubscriptionStats, "state">;
  private stopped = false;
  private caughtUp: boolean;
  private readonly queue: Delivery[] = [];
  private outstanding = 0;
  private pullTimer: NodeJS.Timeout | undefined;
  /** How long the next pull waits for events (see FETCH_EXPIRES_MS). */
  private expiresMs = FETCH_EXPIRES_MS;
  private wakeUp: (() => void) | undefined;
  private inbox: NatsSubscription | undefined;
  private failedPulls = 0;
  /** Pulls in a row that expired empty while the topic held events past the last one delivered (checkProgress). */
  private emptyExpiries = 0;
  private pending = 0;
  private unreportedReplays = 0;
  private recovering = false;
  /** The pull in flight was made with more than FETCH_EXPIRES_MS to wait (the topic had been quiet). */
  private longPull = false;
  /**
   * The consumer acks all events up to the one acknowledged (AckPolicy.All): the pump acks the last event written
   * once per batch, when it is about to wait, instead of each event (an ack per event cost nats-server about a
   * third of its CPU per replayed event, 20 -> 13 µs). `unacked` is that event's ack subject.
   */
  private unacked: string | undefined;
  private lastAck: string | undefined;
  private report: ((event: SubscriptionEvent) => void) | undefined;
  private readonly batch: number;
  private readonly throttle: Throttle;
  private readonly lag;
  private readonly buffered;
  private readonly replayed;

  constructor(
    private readonly core: PumpCore,
    private readonly ref: TopicRef,
    public consumerName: string,
    private readonly place: (start: number) => Promise<string>,
    private readonly sink: EventSink,
    private readonly info: SubscriptionInfo,
    label: { tenant: string; topic: string; consumer: string },
    private readonly binding: BindingType,
  ) {
    this.stats = {
      last_sequence: info.start_sequence - 1,
      delivered: 0,
      max_buffered_events: 0,
      max_buffered_bytes: 0,
      pauses: 0,
    };
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
      if (!this.stopped)
        report({ type: "CLOSE", error: err instanceof MigError ? err : unavailable("delivering events", err) });
    });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.endBatch();
    this.flushMetrics();
    clearTimeout(this.pullTimer);
    this.inbox?.unsubscribe();
    this.core.bus.onReconnect.delete(this.onReconnect);
    this.wake();
  }

  /**
   * Resolves once JetStream has confirmed the last ack (sent as a request), so that a durable consumer's ack floor
   * is the last event written when a subscriber reconnecting with its consumer_id reads it. Call after `stop()`.
   */
  async settle(): Promise<void> {
    if (this.lastAck === undefined) return;
    try {
      await this.core.bus.nc.request(this.lastAck, ACK, { timeout: FINAL_ACK_TIMEOUT_MS });
    } catch {
      // The bus is away: the consumer resumes from its older floor (docs/events.md, "Delivered").
    }
  }

  /** Sends the gathered events to the subscriber, then acknowledges them with one ack; false if the sink is full. */
  private endBatch(): boolean {
    const ok = this.sink.flush?.() ?? true;
    if (this.unacked !== undefined) {
      try {
        this.core.bus.nc.publish(this.unacked, ACK);
        this.lastAck = this.unacked;
      } catch {
        // Disconnected: the events stay pending and come again after ack_wait; the pump skips what it wrote.
      }
      this.unacked = undefined;
    }
    return ok;
  }

  /**
   * The pull in flight, if any, may have died with the old connection: ask again now. Events written on the old
   * connection may have died with it too, when the sink delivers by publishing: from what the subscriber confirmed on.
   */
  private readonly onReconnect = () => {
    this.expiresMs = FETCH_EXPIRES_MS;
    // The last ack may have died with the old connection (written to a node that was killed): without it the consumer
    // holds max_inflight events unacknowledged and delivers nothing more until ack_wait (60 s) ends. Acks cover every
    // event up to theirs, so sending it again is harmless.
    if (this.lastAck !== undefined) {
      try {
        this.core.bus.nc.publish(this.lastAck, ACK);
      } catch {
        // Away again: the next reconnect sends it.
      }
    }
    const confirmed = this.sink.rewind?.();
    if (confirmed !== undefined && confirmed < this.stats.last_sequence) void this.resendAfter(confirmed);
    this.pullDone();
  };

  /**
   * Delivers again every event after `sequence`, from a consumer placed there. Until it is, nothing is delivered:
   * what the old consumer still sends is dropped (the new one sends it again, in order).
   */
  private async resendAfter(sequence: number): Promise<void> {
    if (this.stopped) return;
    const from = this.stats.last_sequence;
    this.stats.last_sequence = sequence;
    this.queue.length = 0;
    this.unacked = undefined;
    this.consumerName = "";
    this.recovering = true;
    try {
      this.consumerName = await this.place(sequence + 1);
      this.core.logger.info(
        { topic: this.ref.topic, consumer: this.consumerName, from: sequence + 1, had_sent_to: from },
        "bus connection back: events after the subscriber's last ack sent again",
      );
    } catch (err) {
      this.report?.({
        type: "CLOSE",
        error: err instanceof MigError ? err : unavailable("placing the subscription's consumer again", err),
      });
    } finally {
      this.recovering = false;
    }
    this.pullDone();
  }

  private wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  private onMessage(msg: Msg): void {
    const delivery = parseDelivery(msg);
    // An event from a consumer this pump has replaced (resendAfter): the new one delivers it again, in order.
    if (delivery !== undefined && delivery.consumer !== this.consumerName) return;
    if (delivery === undefined) {
      // A status message: 408 (pull expired), 404/409 (nothing more for this pull); 100 (heartbeat) is ignored.
      const code = msg.headers?.code ?? 0;
      if (code === 408) {
        this.expiresMs = Math.min(this.expiresMs * 2, MAX_FETCH_EXPIRES_MS);
        this.pullDone();
        void this.checkProgress();
      } else if (code >= 400) {
        // Something else ended the pull: ask again after a pause; if it keeps failing, look at the consumer.
        clearTimeout(this.pullTimer);
        this.pullTimer = setTimeout(() => this.pullDone(), 250);
        const deleted = /deleted/i.test(msg.headers?.description ?? "");
        if (deleted || ++this.failedPulls >= 3) void this.recover();
        else void this.checkProgress();
      }
      return;
    }
    this.failedPulls = 0;
    this.emptyExpiries = 0;
    this.expiresMs = FETCH_EXPIRES_MS;
    if (this.longPull) {
      // A pull made while the topic was quiet waits up to MAX_FETCH_EXPIRES_MS. Events flow now: judge it lost
      // after the silence a short pull would allow (its consumer's node may have died), not at its own end.
      clearTimeout(this.pullTimer);
      this.pullTimer = setTimeout(this.pullLost, FETCH_EXPIRES_MS + 2_000);
    }
    this.queue.push(delivery);
    if (this.queue.length > this.stats.max_buffered_events) this.stats.max_buffered_events = this.queue.length;
    if (this.outstanding > 0 && --this.outstanding === 0) this.pullDone();
    this.wake();
  }

  /**
   * The consumer is gone (deleted by an operator, its idle threshold passed while the bus was away, or the
   * server lost its state) or unreachable (its only copy was on a node that died): place a new one right after the
   * last event delivered, so nothing is lost or doubled.
   */
  private async recover(stuck = false): Promise<void> {
    if (this.recovering || this.stopped) return;
    this.recovering = true;
    let gone = true;
    try {
      try {
        if (!stuck) {
          await this.core.bus.jsm.consumers.info(this.ref.stream, this.consumerName);
          return; // It exists: the failures were something else (e.g. the bus restarting), and pulls go on.
        }
      } catch (err) {
        // No answer: on a cluster an ephemeral consumer keeps one copy, lost with its node. Placing a new one is safe
        // either way (it starts after the last event delivered; an old one left behind expires when idle), and
        // while the bus itself is away the placement fails and the next check tries again.
        gone = isNotFound(err);
      }
      this.consumerName = await this.place(this.stats.last_sequence + 1);
      this.failedPulls = 0;
      this.pullDone(); // Pull from the new consumer now rather than after the old pull's timer.
      this.core.logger.info(
        { topic: this.ref.topic, consumer: this.consumerName, from: this.stats.last_sequence + 1 },
        "subscription consumer recreated",
      );
    } catch (err) {
      // A consumer that is unreachable, not gone, is placed again at the next check rather than given up on.
      if (!gone) return;
      this.report?.({
        type: "CLOSE",
        error: err instanceof MigError ? err : unavailable("recreating the subscription's consumer", err),
      });
    } finally {
      this.recovering = false;
    }
  }

  /**
   * Called when a pull ended without events. If the topic holds events past the last one delivered, twice in a row,
   * the consumer answers pulls but delivers nothing (on a cluster after the node leading the topic died, or with
   * acks lost on the way): it is placed again after the last event delivered. One JetStream API request per empty expiry, which a quiet topic
   * has at most every MAX_FETCH_EXPIRES_MS.
   */
  private async checkProgress(): Promise<void> {
    if (this.recovering || this.stopped || this.queue.length > 0) return;
    const delivered = this.stats.last_sequence;
    const last = await this.core.events.state(this.ref).then(
      (state) => state.last,
      () => undefined, // the bus is away: the next expiry checks again
    );
    if (last === undefined || last <= delivered || this.stats.last_sequence !== delivered || this.queue.length > 0) {
      this.emptyExpiries = 0;
      return;
    }
    if (++this.emptyExpiries < 2) return;
    this.emptyExpiries = 0;
    this.core.logger.info(
      { topic: this.ref.topic, consumer: this.consumerName, delivered, last },
      "subscription consumer delivers nothing though the topic has more: placing it again",
    );
    await this.recover(true);
  }

  private readonly pullLost = (): void => {
    this.pullDone();
    void this.recover();
    void this.checkProgress();
  };

  private pullDone(): void {
    this.outstanding = 0;
    clearTimeout(this.pullTimer);
    this.wake();
  }

  /** Asks for more only when the pump holds little: held + requested never exceeds max_inflight. */
  private maybePull(): void {
    if (this.stopped || this.outstanding > 0 || this.consumerName === "") return;
    const room = this.info.max_inflight - this.queue.length;
    if (room < Math.max(1, this.batch >> 1)) return;
    const count = Math.min(this.batch, room);
    const { nc } = this.core.bus;
    this.outstanding = count;
    try {
      requestBatch(nc, this.ref.stream, this.consumerName, {
        batch: count,
        expiresMs: this.expiresMs,
        replyTo: this.inbox!.getSubject(),
      });
    } catch {
      // Disconnected: the timer below asks again.
    }
    // A pull lost to a bus restart, or sent to a consumer that no longer exists, never completes: give up on it a
    // little after it would have expired, and make sure the consumer is still there.
    this.longPull = this.expiresMs > FETCH_EXPIRES_MS;
    this.pullTimer = setTimeout(this.pullLost, this.expiresMs + 2_000);
  }

  private async loop(report: (event: SubscriptionEvent) => void): Promise<void> {
    this.inbox = this.core.bus.nc.subscribe(createInbox(), { callback: (_err, msg) => this.onMessage(msg) });
    this.core.bus.onReconnect.add(this.onReconnect);
    if (this.caughtUp) this.sink.notice("live", { after_sequence: this.info.replay_until });
    while (!this.stopped) {
      this.maybePull();
      const next = this.queue.shift();
      if (next === undefined) {
        if (!this.endBatch()) {
          await this.pause(this.stats.last_sequence, report);
          continue;
        }
        this.flushMetrics();
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        continue;
      }
      // Most events are written synchronously; only a pause, the throttle or a dead letter makes the pump wait.
      const wait = this.deliver(next, report);
      if (wait) {
        this.endBatch();
        await wait;
      }
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
    const poison =
      !stored.startsWith(STORED_PREFIX) || !stored.endsWith("}")
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

  private write(
    d: Delivery,
    stored: string,
    replay: boolean,
    report: (event: SubscriptionEvent) => void,
  ): Promise<void> | undefined {
    const { seq, msg } = d;
    const json = deliveredJson(stored, seq, replay);
    const span = tracing.on
      ? startDeliverySpan(stored, seq, replay, { ...this.ref, subscriptionId: this.info.subscription_id })
      : undefined;
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
    if (span) endSpan(span, failure);
    if (failure !== undefined) {
      const why = failure instanceof Error ? failure.message : String(failure);
      return this.deadLetter(
        d,
        `the subscriber's transport refused it ${this.core.config.deadLetterAfter} times: ${why}`,
        report,
      );
    }
    this.unacked = msg.reply!;
    this.stats.last_sequence = seq;
    this.stats.delivered++;
    if (replay) this.unreportedReplays++;
    this.pending = d.pending;
    const bytes = this.sink.bufferedBytes;
    if (bytes > this.stats.max_buffered_bytes) this.stats.max_buffered_bytes = bytes;
    this.checkSeam(seq, report);
    return ok ? undefined : this.pause(seq, report);
  }

  private readonly refreshLag = (): void => {
    this.core.events.state(this.ref).then(
      ({ last }) => {
        if (!this.stopped) this.lag.set(Math.max(this.pending, last - this.stats.last_sequence));
      },
      () => undefined, // the bus is away: the next refresh tries again
    );
  };

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
    this.endBatch();
    this.flushMetrics();
    // Node counts a socket write against the high-water mark until the tick after the kernel took it, so a write
    // that went out at once "drains" before the next phase of the event loop: that is no pause. Without this
    // check a fast SSE reader paused the actor every 16 KiB (2,513 PAUSE/RESUME pairs in a replay of 100,000 events).
    const drained = this.sink.drained();
    if (await Promise.race([drained.then(() => true), nextPhase()])) return;
    this.stats.pauses++;
    this.core.metrics.subscriptionPauses.inc({ binding: this.binding });
    report({ type: "PAUSE" });
    this.sink.notice("paused", { after_sequence: seq, buffered_bytes: this.sink.bufferedBytes });
    // Nothing is delivered while paused, so no delivery brings the consumer's pending count: the topic's last
    // sequence does, now and then, and mig_subscription_lag_events keeps growing with what is published meanwhile.
    const lagWatch = setInterval(this.refreshLag, PAUSED_LAG_REFRESH_MS);
    lagWatch.unref();
    try {
      await this.sink.drained();
    } finally {
      clearInterval(lagWatch);
    }
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
