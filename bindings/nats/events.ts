// The NATS binding of PUBLISH and SUBSCRIBE: requests on public subjects, translated into the runtime's operations.
//
//   mig.v0_1.<tenant>.events.<topic>           PUBLISH: a PublishRequest; the reply is a PublishAck or an error
//                                              envelope. The runtime's own EventMessages on this subject carry
//                                              `Mig-Origin: runtime` and are never taken for a PUBLISH.
//   mig.v0_1.<tenant>.subscribe.<topic>        SUBSCRIBE: a SubscribeRequest plus `deliver_subject`; the reply
//                                              names the subscription; EventMessages then go to deliver_subject
//   mig.v0_1.<tenant>.subscription.<id>.ack.<sequence>   the subscriber's ack (credit) for one event: the
//                                              reply subject of every delivered event, so `msg.respond()` acks
//   mig.v0_1.<tenant>.subscription.<id>.close  ends the subscription (request/reply)
//
// In auth mode jwt, acks and close carry the subscriber's bearer token like any request (runtime/policy/control-guard.ts).
import {
  Match,
  type Msg,
  type NatsConnection,
  type Subscription as NatsSubscription,
  headers as natsHeaders,
} from "@nats-io/transport-node";
import {
  type Authenticator,
  ChunkedAdmission,
  ControlGuard,
  type EventSink,
  type MigRuntime,
  ORIGIN_HEADER,
  ORIGIN_RUNTIME,
  type Principal,
  PUBLISH_ADMISSION_CHUNK,
  parseJsonLimited,
  type RequestContext,
  replySubjectAllowed,
  type SubscriptionInfo,
} from "../../runtime/mod.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import { HEARTBEAT_HEADER } from "../../schemas/nats-headers.ts";
import { errorReply } from "./reply-headers.ts";

const QUEUE = "mig-events";
const EMPTY = new Uint8Array(0);
/** A subscriber that leaves its credits unused this long while events wait is taken for gone. */
const IDLE_SUBSCRIBER_MS = 60_000;
const DELIVER_SUBJECT = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;
const HEARTBEAT_MS = { min: 100, max: 60_000 };

/**
 * `heartbeat_ms` of a NATS SUBSCRIBE: how often the gateway serving the subscription says it is alive on
 * deliver_subject. A subscriber that misses them knows that gateway is gone and subscribes again (its durable
 * consumer_id or its last sequence as resume_cursor), on whichever gateway answers. Absent: no heartbeats.
 */
function parseHeartbeat(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < HEARTBEAT_MS.min || value > HEARTBEAT_MS.max) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `heartbeat_ms must be a whole number of milliseconds from ${HEARTBEAT_MS.min} to ${HEARTBEAT_MS.max} (how often the gateway signals on deliver_subject); leave it out for no heartbeats`,
      { details: { heartbeat_ms: HEARTBEAT_MS } },
    );
  }
  return value;
}

export interface NatsEventsBinding {
  close(): Promise<void>;
}

function parseBody(msg: Msg, limit: number, maxDepth: number): unknown {
  if (msg.data.length > limit) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `the request body is larger than ${limit} bytes; send a smaller payload`,
      { details: { max_body_bytes: limit } },
    );
  }
  if (msg.data.length === 0) return {};
  return parseJsonLimited(msg.string(), maxDepth);
}

const PREFIX_LENGTH = "mig.v0_1.".length;

/** `mig.v0_1.<tenant>.<verb>.<rest…>` → tenant and the rest (the topic); by index, as it runs for every PUBLISH. */
function splitSubject(subject: string): { tenant: string; rest: string } {
  const tenantEnd = subject.indexOf(".", PREFIX_LENGTH);
  if (tenantEnd === -1) return { tenant: subject.slice(PREFIX_LENGTH), rest: "" };
  const verbEnd = subject.indexOf(".", tenantEnd + 1);
  return { tenant: subject.slice(PREFIX_LENGTH, tenantEnd), rest: verbEnd === -1 ? "" : subject.slice(verbEnd + 1) };
}

function reply(msg: Msg, value: unknown): void {
  if (msg.reply) msg.respond(JSON.stringify(value));
}

/** As on every public subject: the runtime answers only into inboxes (runtime/policy/policy.ts), never into someone else's subjects. */
function replyRefused(runtime: MigRuntime, msg: Msg, tenant: string): boolean {
  if (!msg.reply || replySubjectAllowed(msg.reply, tenant)) return false;
  runtime.metrics.natsDropped.inc({ reason: "reply_subject_refused" });
  return true;
}

/** An error envelope, with its code in the `mig_error_code` header as on every NATS error reply (docs/bindings/nats.md). */
function replyError(msg: Msg, err: unknown, body: unknown, tenant: string): void {
  if (!msg.reply) return;
  const { data, headers } = errorReply(err, body, tenant);
  msg.respond(data, { headers });
}

/** Delivers a subscription's events to the subscriber's subject; its acks are the credits of max_inflight. */
class NatsSink implements EventSink {
  private unacked = 0;
  /** The highest sequence the subscriber acknowledged. */
  private confirmed = 0;
  private waiters: (() => void)[] = [];
  private ended = false;
  private control: NatsSubscription | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private info: SubscriptionInfo | undefined;
  onIdle: () => void = () => undefined;
  /** Who may ack and close: set once the subscriber is authenticated, before the subscription opens. */
  guard: ControlGuard | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly tenant: string,
    private readonly deliverSubject: string,
    private readonly onClose: () => void,
    private readonly heartbeatMs: number | undefined,
  ) {}

  get destination(): string {
    return this.deliverSubject;
  }

  get bufferedBytes(): number {
    return 0;
  }

  private prefix(): string {
    return `mig.v0_1.${this.tenant}.subscription.${this.info!.subscription_id}`;
  }

  open(info: SubscriptionInfo): void {
    this.info = info;
    if (this.heartbeatMs !== undefined) {
      const headers = natsHeaders();
      headers.set(HEARTBEAT_HEADER, info.subscription_id);
      this.heartbeat = setInterval(() => this.nc.publish(this.deliverSubject, EMPTY, { headers }), this.heartbeatMs);
      this.heartbeat.unref();
    }
    const prefixLength = this.prefix().length + 1;
    this.control = this.nc.subscribe(`${this.prefix()}.>`, {
      callback: (_err, msg) => {
        const verb = msg.subject.slice(prefixLength);
        const ack = verb.startsWith("ack.");
        if (!ack && verb !== "close") return;
        // Answers go only into inboxes: a close naming another reply subject is dropped, an ack is not answered.
        const answerable = !msg.reply || replySubjectAllowed(msg.reply, this.tenant);
        if (!ack && !answerable) return;
        const guard = this.guard;
        // In auth mode none nothing is checked, and no header is read: acks cost what they cost before.
        const admitted = guard?.checks
          ? guard.admit(
              msg.headers?.get("Authorization", Match.IgnoreCase) || undefined,
              ack ? "subscription.ack" : "subscription.close",
              this.tenant,
            )
          : true;
        if (admitted === true) this.act(ack, msg, verb);
        else
          admitted.then(
            () => this.act(ack, msg, verb),
            (err: unknown) => {
              // A refused control message changes nothing; its sender hears why when it asked for an answer.
              if (answerable) replyError(msg, toMigError(err), { header: { tenant_id: this.tenant } }, this.tenant);
            },
          );
      },
    });
  }

  /** An admitted ack or close. */
  private act(ack: boolean, msg: Msg, verb: string): void {
    if (ack) {
      const sequence = Number(verb.slice(4));
      if (sequence > this.confirmed) this.confirmed = sequence;
      if (this.unacked > 0) this.unacked--;
      this.wake();
      return;
    }
    const info = this.info!;
    reply(msg, { header: info.header, subscription_id: info.subscription_id, closed: true });
    this.onClose();
  }

  event(sequence: number, json: string): boolean {
    if (this.ended) return true;
    this.nc.publish(this.deliverSubject, json, { reply: `${this.prefix()}.ack.${sequence}` });
    this.unacked++;
    return this.unacked < this.info!.max_inflight;
  }

  /** Events published while the bus connection was failing over may be lost: resend after the last one acked. */
  rewind(): number {
    this.unacked = 0;
    this.wake();
    return Math.max(this.confirmed, this.info!.start_sequence - 1);
  }

  notice(): void {
    // NATS subscribers see backpressure as withheld events; the metric mig_subscription_pauses_total counts it.
  }

  private wake(): void {
    if (this.unacked >= this.info!.max_inflight) return;
    clearTimeout(this.idleTimer);
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }

  drained(): Promise<void> {
    if (this.ended || this.unacked < this.info!.max_inflight) return Promise.resolve();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.onIdle(), IDLE_SUBSCRIBER_MS);
    this.idleTimer.unref();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(error: MigError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idleTimer);
    clearInterval(this.heartbeat);
    this.control?.unsubscribe();
    if (error && this.info) {
      try {
        const { data, headers } = errorReply(error, { header: this.info.header }, undefined);
        this.nc.publish(this.deliverSubject, data, { headers });
      } catch {
        // The connection is going away too.
      }
    }
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }
}

/**
 * Starts the events subjects on the runtime's connection. Callers authenticate as over HTTP: in auth mode jwt a
 * NATS header `Authorization: Bearer <JWT>` is required; the subject's tenant must match the token's.
 */
export function startNatsEvents(runtime: MigRuntime, authenticator: Authenticator): NatsEventsBinding {
  const nc = runtime.bus.nc;
  const limit = runtime.config.maxBodyBytes;
  const context = (principal: Principal, tenant: string, bytes: number): RequestContext => ({
    principal,
    tenant,
    binding: "nats",
    bodyBytes: bytes,
  });
  const authenticate = (msg: Msg, tenant: string, operation: string) =>
    authenticator.authenticate({
      authorization: msg.headers?.get("Authorization", Match.IgnoreCase) || undefined,
      actor: msg.headers?.get("X-Actor") || undefined,
      binding: "nats",
      tenant,
      operation,
    });

  // Every PUBLISH answer shares the turn's write with the stored events and live copies (runtime/bus/turn-batch.ts).
  const answer = (msg: Msg, value: unknown) => {
    if (msg.reply) runtime.events.outbox.publish(msg.reply, JSON.stringify(value));
  };
  const answerError = (msg: Msg, err: unknown, body: unknown, tenant: string) => {
    if (!msg.reply) return;
    const { data, headers } = errorReply(err, body, tenant);
    runtime.events.outbox.publish(msg.reply, data, { headers });
  };

  const startPublish = (msg: Msg): void => {
    const { tenant, rest } = splitSubject(msg.subject);
    if (replyRefused(runtime, msg, tenant)) return;
    let body: unknown;
    let authenticated: Promise<Principal>;
    try {
      body = parseBody(msg, limit, runtime.config.maxJsonDepth);
      // Reading the headers happens here, synchronously: a throw must not stop the admission's turn.
      authenticated = authenticate(msg, tenant, "publish");
    } catch (err) {
      return answerError(msg, err, body, tenant);
    }
    authenticated
      .then((principal) => runtime.publish(body, context(principal, tenant, msg.data.length), rest))
      .then(
        (ack) => answer(msg, ack),
        (err: unknown) => answerError(msg, err, body, tenant),
      );
  };
  // A chunk of PUBLISH requests per turn, their stores written before the next chunk starts (runtime/bus/chunked-admission.ts).
  const admission = new ChunkedAdmission<Msg>(
    PUBLISH_ADMISSION_CHUNK,
    runtime.config.capacity,
    startPublish,
    runtime.events.outbox.flush,
  );
  // On the bus's no-echo events connection, where the runtime also publishes its live EventMessages: the server does
  // not hand this process its own copies. Another runtime's copies still arrive (queue group) and are dropped here.
  const publishes = runtime.bus.events.subscribe("mig.v0_1.*.events.>", {
    queue: QUEUE,
    callback: (_err, msg) => {
      // The runtime's own live EventMessages travel on the same subjects: never a new PUBLISH.
      if (msg.headers?.get(ORIGIN_HEADER) === ORIGIN_RUNTIME) return;
      admission.admit(msg);
    },
  });

  const subscribes = nc.subscribe("mig.v0_1.*.subscribe.>", {
    queue: QUEUE,
    callback: (_err, msg) => {
      const { tenant, rest } = splitSubject(msg.subject);
      if (replyRefused(runtime, msg, tenant)) return;
      let body: unknown;
      try {
        body = parseBody(msg, limit, runtime.config.maxJsonDepth);
        const deliver = (body as { deliver_subject?: unknown } | null)?.deliver_subject;
        if (typeof deliver !== "string" || deliver.length > 256 || !DELIVER_SUBJECT.test(deliver)) {
          throw new MigError(
            "MIG_INVALID_REQUEST",
            "deliver_subject is required: a NATS subject without wildcards (e.g. an inbox) where events are sent",
          );
        }
        const heartbeatMs = parseHeartbeat((body as { heartbeat_ms?: unknown }).heartbeat_ms);
        let close = () => undefined as void;
        const sink = new NatsSink(nc, tenant, deliver, () => close(), heartbeatMs);
        const authorization = msg.headers?.get("Authorization", Match.IgnoreCase) || undefined;
        authenticate(msg, tenant, "subscribe")
          .then((principal) => {
            // Its acks and close must come from the same principal (runtime/policy/control-guard.ts).
            sink.guard = new ControlGuard(runtime, {
              opener: principal,
              authorization,
              authenticator: () => authenticator,
              what: "subscription",
              target: rest,
            });
            return runtime.subscribe(body, context(principal, tenant, msg.data.length), rest, sink);
          })
          .then(
            (subscription) => {
              close = () => subscription.close();
              sink.onIdle = () =>
                subscription.close(new MigError("MIG_TIMEOUT", "the subscriber stopped acknowledging events"));
              const { info } = subscription;
              reply(msg, {
                header: info.header,
                topic: info.topic,
                subscription_id: info.subscription_id,
                consumer_id: info.consumer_id,
                start_sequence: info.start_sequence,
                replay_until: info.replay_until,
                max_inflight: info.max_inflight,
              });
            },
            (err: unknown) => replyError(msg, err, body, tenant),
          );
      } catch (err) {
        replyError(msg, err, body, tenant);
      }
    },
  });

  return {
    async close() {
      publishes.unsubscribe();
      subscribes.unsubscribe();
      await admission.whenEmpty();
    },
  };
}
