// The events store on JetStream: one stream per (tenant, topic) on internal subjects, the dead-letter stream, and
// the live fan-out of EventMessages onto the public NATS subjects.
//
// Subjects (docs/events.md):
//   _MIG.ev.<tenant>.<topic>     the stored events of one topic; stream MIGEV_<hash(tenant, topic)>
//   _MIG.dlq.<tenant>.<topic>    dead-lettered events; stream MIG_DLQ
//   mig.v0_1.<tenant>.events.<topic>   public: PUBLISH requests in, EventMessages of live events out (marked with
//                                      the Mig-Origin header so the runtime never takes its own output for a PUBLISH)
// A stream per topic makes the stream sequence the topic's own sequence: contiguous, so a subscriber can tell
// a gap from a filter, and a cursor is one number.
import { createHash } from "node:crypto";
import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig, type StreamInfo } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { BusDropped, busCauseDetails, MigError } from "../../schemas/errors.ts";
import type { MessageHeader } from "../../schemas/types.ts";
import type { RateLimit, RuntimeConfig, TopicDiscard } from "../base/config.ts";
import type { Logger } from "../base/logger.ts";
import { RateLimiter } from "../base/rate-limit.ts";
import { AckError, AckedPublisher, type StreamAck } from "../bus/acked-publish.ts";
import { type Bus, onConnectionChange } from "../bus/bus.ts";
import { HeaderBlock } from "../bus/nats-header-block.ts";
import { checkReplicas, placementError } from "../bus/replicas.ts";
import { TurnBatch } from "../bus/turn-batch.ts";

export const INTERNAL_PREFIX = "_MIG";
export const DEAD_LETTER_STREAM = "MIG_DLQ";
/** NATS header on every message the runtime itself publishes onto a public events subject. */
export const ORIGIN_HEADER = "Mig-Origin";
export const ORIGIN_RUNTIME = "runtime";
/** NATS header carrying an event's ordering key, on stored and fanned-out messages. */
export const KEY_HEADER = "Mig-Key";

/** Shared by every user of a topic (see `refs`): never changed after it is made. */
export interface TopicRef {
  readonly tenant: string;
  readonly topic: string;
  readonly stream: string;
  readonly subject: string;
  readonly publicSubject: string;
  readonly deadLetterSubject: string;
}

/**
 * Refs of recently used topics: a PUBLISH otherwise hashed its stream name and built four subjects each time.
 * Cleared when it holds MAX_CACHED_REFS (a ref is cheap to rebuild), so any number of topics stays bounded.
 */
const refs = new Map<string, TopicRef>();
const MAX_CACHED_REFS = 10_000;

export function topicRef(tenant: string, topic: string): TopicRef {
  const id = `${tenant}\u0000${topic}`;
  let ref = refs.get(id);
  if (!ref) {
    if (refs.size >= MAX_CACHED_REFS) refs.clear();
    ref = newTopicRef(tenant, topic, id);
    refs.set(id, ref);
  }
  return ref;
}

function newTopicRef(tenant: string, topic: string, id: string): TopicRef {
  const hash = createHash("sha256").update(id).digest("hex").slice(0, 32);
  return {
    tenant,
    topic,
    stream: `MIGEV_${hash}`,
    subject: `${INTERNAL_PREFIX}.ev.${tenant}.${topic}`,
    publicSubject: `mig.v0_1.${tenant}.events.${topic}`,
    deadLetterSubject: `${INTERNAL_PREFIX}.dlq.${tenant}.${topic}`,
  };
}

export interface TopicState {
  /** Oldest sequence still stored (0 when the topic is empty). */
  first: number;
  /** Newest sequence (0 when nothing was ever published). */
  last: number;
}

export interface EventStoreOptions {
  maxAgeMs: number;
  duplicateWindowMs: number;
  /** Per topic: JetStream's max_bytes and max_msgs, and what a full topic does. */
  topicMaxBytes?: number;
  topicMaxMsgs?: number;
  discard?: TopicDiscard;
  /** Topics one tenant may have, and all tenants together. */
  tenantMaxTopics?: number;
  maxTopics?: number;
  /** PUBLISH token bucket per tenant (this process). */
  publishRateLimit?: RateLimit | undefined;
  /** Copies JetStream keeps of each topic and of the dead letters (MIG_JS_REPLICAS). */
  replicas?: number;
}

/** The event store's settings from the runtime's configuration. */
export function eventStoreOptions(config: RuntimeConfig): EventStoreOptions {
  if (config.topicMaxBytes < config.eventMaxPayloadBytes) {
    throw new Error(
      `MIG_TOPIC_MAX_BYTES (${config.topicMaxBytes}) must be at least MIG_EVENT_MAX_PAYLOAD_BYTES (${config.eventMaxPayloadBytes}): a topic must hold its largest event`,
    );
  }
  return {
    maxAgeMs: config.eventMaxAgeMs,
    duplicateWindowMs: config.idempotencyWindowMs,
    topicMaxBytes: config.topicMaxBytes,
    topicMaxMsgs: config.topicMaxMsgs,
    discard: config.topicDiscard,
    tenantMaxTopics: config.tenantMaxTopics,
    maxTopics: config.maxTopics,
    publishRateLimit: config.tenantPublishRateLimit,
    replicas: config.jsReplicas,
  };
}

const NANOS_PER_MS = 1_000_000;
/**
 * How long one try of a PUBLISH waits for JetStream's ack before it sends the event again (the same Nats-Msg-Id:
 * stored at most once). A store sent to a stream leader that just died is never answered: without a try's own bound
 * it waited out the whole budget below, and callers lost 10 s to each such death.
 */
const APPEND_TRY_TIMEOUT_MS = 3_000;
/** How long a PUBLISH keeps starting tries to store its event (a leader election takes 5-8 s) before MIG_UNAVAILABLE. */
const APPEND_RETRY_MS = 10_000;
/** How long a PUBLISH whose connection dropped waits for it to come back before MIG_UNAVAILABLE. */
const APPEND_RECONNECT_MS = 2_000;
/** The first wait between tries, doubling up to APPEND_BACKOFF_MAX_MS. */
const APPEND_BACKOFF_MS = 100;
const APPEND_BACKOFF_MAX_MS = 1_000;
/** JetStream's dedup header: a repeat within the stream's duplicate window stores nothing. */
const MSG_ID_HEADER = "Nats-Msg-Id";
/**
 * How long a count of topics read from JetStream is trusted to refuse a new topic without reading it again. A new
 * topic is always counted afresh before it is created; this only spares the bus a listing per refused request.
 */
const TOPIC_COUNT_TTL_MS = 5_000;
/** Every stored event's subject starts with this; a tenant's with `<prefix><tenant>.` (tenants have no dots). */
const EVENTS_SUBJECT_PREFIX = `${INTERNAL_PREFIX}.ev.`;
/** Tenants whose topic count is remembered; past it the counts are read again (they are cheap to rebuild). */
const MAX_COUNTED_TENANTS = 10_000;

export function unavailable(what: string, err: unknown): MigError {
  return new MigError("MIG_UNAVAILABLE", `the event store on the bus cannot be reached (${what}); retry shortly`, {
    details: busCauseDetails(err),
    cause: err,
  });
}

/** JetStream refused a stream because its max_bytes no longer fits the server's storage reservations. */
function isStorageExhausted(err: unknown): boolean {
  return /insufficient (storage )?resources/i.test(err instanceof Error ? err.message : String(err));
}

/** A full topic refused an event (discard `new`). */
function isTopicFull(err: unknown): boolean {
  return /maximum (bytes|messages) exceeded/i.test(err instanceof Error ? err.message : String(err));
}

function isNotFound(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /not found|no responders/i.test(message);
}

/** Stored event bodies are EventMessages without `sequence` and `replay`, which only delivery knows. */
export function deliveredJson(stored: string, sequence: number, replay: boolean): string {
  return `{"sequence":${sequence},"replay":${replay},${stored.slice(1)}`;
}

export class EventStore {
  /** Streams known to exist, by name; bounded by the number of topics in use. */
  private readonly streams = new Map<string, Promise<void>>();
  /** Topics counted in JetStream, by tenant ("" for all tenants together), with when they were counted. */
  private readonly topicCounts = new Map<string, { count: number; at: number }>();
  /**
   * A tenant's new topics are admitted one at a time in this process, so that concurrent creations cannot all pass
   * one count; per tenant, so that one tenant's queue of creations never delays another's.
   */
  private readonly admitting = new Map<string, Promise<unknown>>();
  private readonly publishLimiter = new RateLimiter();
  private readonly acks: AckedPublisher;
  /** PUBLISHes waiting for the events connection to come back (append). */
  private reconnectWaiters: (() => void)[] = [];
  /**
   * The events connection's messages of one turn (stored events, live copies, and the NATS binding's PUBLISH
   * answers), written together: a PUBLISH then costs the runtime a share of one write, not several.
   */
  readonly outbox: TurnBatch;

  constructor(
    private readonly bus: Bus,
    private readonly options: EventStoreOptions,
    private readonly logger: Logger,
  ) {
    this.outbox = new TurnBatch(bus.events, (err, subject) =>
      logger.debug({ err: (err as Error).message, subject }, "events message could not be sent"),
    );
    this.acks = new AckedPublisher(bus.events, APPEND_TRY_TIMEOUT_MS, this.outbox);
    onConnectionChange(bus.events, (change) => {
      if (change !== "reconnect") return;
      const waiting = this.reconnectWaiters;
      this.reconnectWaiters = [];
      for (const wake of waiting) wake();
    });
  }

  /** Resolves true when the events connection is back within `ms`, false otherwise. */
  private reconnected(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.reconnectWaiters = this.reconnectWaiters.filter((w) => w !== wake);
        resolve(false);
      }, ms);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.reconnectWaiters.push(wake);
    });
  }

  async init(): Promise<void> {
    await this.createOrKeep({
      name: DEAD_LETTER_STREAM,
      subjects: [`${INTERNAL_PREFIX}.dlq.>`],
      description: "MIG dead-lettered events",
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: this.options.maxAgeMs * NANOS_PER_MS,
      num_replicas: this.options.replicas ?? 1,
    });
  }

  /**
   * Takes one PUBLISH token of the tenant's bucket, or refuses with MIG_RATE_LIMITED: a tenant publishing as fast
   * as it can would otherwise take the bus's write capacity from every other tenant.
   */
  admitPublish(tenant: string): void {
    const limit = this.options.publishRateLimit;
    if (!limit) return;
    const taken = this.publishLimiter.take(tenant, limit);
    if (taken.ok) return;
    throw new MigError(
      "MIG_RATE_LIMITED",
      `tenant ${tenant} may PUBLISH ${limit.rate} events per second (burst ${limit.burst}, MIG_TENANT_PUBLISH_RATE_LIMIT); retry in ${taken.retryAfterMs} ms`,
      {
        retryable: true,
        details: {
          retry_after_ms: taken.retryAfterMs,
          limit_scope: "tenant_publish",
          tenant,
          rate_per_second: limit.rate,
          burst: limit.burst,
        },
      },
    );
  }

  /**
   * Opens the topic's stream on first use in this process (creating it within the topic quotas, or bringing an
   * existing one to the configured limits); later calls cost a map lookup.
   */
  ensure(ref: TopicRef): Promise<void> {
    let known = this.streams.get(ref.stream);
    if (!known) {
      known = this.open(ref).catch((err: unknown) => {
        this.streams.delete(ref.stream);
        throw err instanceof MigError ? err : unavailable("creating the topic's stream", err);
      });
      this.streams.set(ref.stream, known);
    }
    return known;
  }

  private topicConfig(ref: TopicRef): Partial<StreamConfig> & { name: string } {
    return {
      name: ref.stream,
      subjects: [ref.subject],
      description: `MIG events of topic ${ref.topic} for tenant ${ref.tenant}`,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: this.options.discard === "new" ? DiscardPolicy.New : DiscardPolicy.Old,
      max_bytes: this.options.topicMaxBytes ?? -1,
      max_msgs: this.options.topicMaxMsgs ?? -1,
      max_age: this.options.maxAgeMs * NANOS_PER_MS,
      duplicate_window: this.options.duplicateWindowMs * NANOS_PER_MS,
      num_replicas: this.options.replicas ?? 1,
    };
  }

  private async open(ref: TopicRef): Promise<void> {
    const wanted = this.topicConfig(ref);
    let info: StreamInfo | undefined;
    try {
      info = await this.bus.jsm.streams.info(ref.stream);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (info) return this.applyLimits(info, wanted);
    const admitted = (this.admitting.get(ref.tenant) ?? Promise.resolve()).then(() => this.createTopic(ref, wanted));
    const tail = admitted.catch(() => undefined);
    this.admitting.set(ref.tenant, tail);
    void tail.then(() => {
      if (this.admitting.get(ref.tenant) === tail) this.admitting.delete(ref.tenant);
    });
    return admitted;
  }

  /**
   * A topic made before its limits were configured (or under other limits) takes the configured ones: JetStream
   * lets max_bytes, max_msgs and the discard policy change on a live stream.
   */
  private async applyLimits(info: StreamInfo, wanted: Partial<StreamConfig>): Promise<void> {
    const config = info.config;
    if (
      config.max_bytes === wanted.max_bytes &&
      config.max_msgs === wanted.max_msgs &&
      config.discard === wanted.discard
    )
      return;
    try {
      await this.bus.jsm.streams.update(config.name, {
        ...config,
        max_bytes: wanted.max_bytes!,
        max_msgs: wanted.max_msgs!,
        discard: wanted.discard!,
      });
    } catch (err) {
      // The topic still works under its old limits; the operator hears why (often: the storage reservations are full).
      this.logger.warn(
        { stream: config.name, err: err instanceof Error ? err.message : String(err) },
        "a topic keeps its earlier limits: JetStream refused the configured ones",
      );
    }
  }

  /** Creates a topic nobody has used yet, if the tenant and the server are under their topic quotas. */
  private async createTopic(ref: TopicRef, wanted: Partial<StreamConfig> & { name: string }): Promise<void> {
    const { tenantMaxTopics, maxTopics } = this.options;
    if (tenantMaxTopics !== undefined && (await this.topicCount(ref.tenant, tenantMaxTopics)) >= tenantMaxTopics) {
      throw new MigError(
        "MIG_RATE_LIMITED",
        `tenant ${ref.tenant} already has ${tenantMaxTopics} topics, the most one tenant may have (MIG_TENANT_MAX_TOPICS); publish to one of its existing topics, or ask the operator to raise the limit or delete unused topics`,
        { retryable: false, details: { limit: tenantMaxTopics, tenant: ref.tenant, limit_scope: "tenant_topics" } },
      );
    }
    if (maxTopics !== undefined && (await this.topicCount(undefined, maxTopics)) >= maxTopics)
      throw serverTopicsFull(ref, maxTopics);
    try {
      await this.bus.jsm.streams.add(wanted);
    } catch (err) {
      // Another runtime may have created it a moment ago.
      if (/already in use/i.test(err instanceof Error ? err.message : String(err))) return;
      if (isStorageExhausted(err)) throw serverTopicsFull(ref, maxTopics, this.options.topicMaxBytes);
      throw err;
    }
    for (const key of [ref.tenant, ""]) {
      const counted = this.topicCounts.get(key);
      if (counted) counted.count++;
    }
  }

  /**
   * The tenant's topics (or all tenants' when `tenant` is undefined), counted from JetStream itself so that every
   * process of a fleet, and a restarted one, sees the same number. Read again before each creation; a count at the
   * limit is trusted for a few seconds, so that refusing a flood of new topics costs the bus no listing each.
   */
  private async topicCount(tenant: string | undefined, limit: number): Promise<number> {
    const key = tenant ?? "";
    const now = performance.now();
    const counted = this.topicCounts.get(key);
    if (counted && counted.count >= limit && now - counted.at < TOPIC_COUNT_TTL_MS) return counted.count;
    let count = 0;
    for await (const _name of this.bus.jsm.streams.names(
      `${EVENTS_SUBJECT_PREFIX}${tenant === undefined ? "" : `${tenant}.`}>`,
    ))
      count++;
    if (this.topicCounts.size >= MAX_COUNTED_TENANTS) this.topicCounts.clear();
    this.topicCounts.set(key, { count, at: now });
    return count;
  }

  /** Creates a stream the runtime needs from its start, or checks the one that exists (its copies included). */
  private async createOrKeep(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const replicas = config.num_replicas ?? 1;
    try {
      checkReplicas(await this.bus.jsm.streams.info(config.name), replicas);
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      await this.bus.jsm.streams.add(config);
    } catch (err) {
      // Another runtime may have created it a moment ago.
      if (!/already in use/i.test(err instanceof Error ? err.message : String(err)))
        throw placementError(err, `the stream ${config.name}`, replicas);
    }
  }

  /** Whether the topic's stream exists, without creating it. */
  async exists(ref: TopicRef): Promise<boolean> {
    try {
      await this.bus.jsm.streams.info(ref.stream);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw unavailable("reading the topic's state", err);
    }
  }

  async state(ref: TopicRef): Promise<TopicState> {
    await this.ensure(ref);
    try {
      const info = await this.bus.jsm.streams.info(ref.stream);
      return { first: info.state.first_seq, last: info.state.last_seq };
    } catch (err) {
      this.streams.delete(ref.stream);
      throw unavailable("reading the topic's state", err);
    }
  }

  /**
   * Appends one stored event; resolves once JetStream has persisted it. `msgId` dedups within the stream's
   * duplicate window: a repeat stores nothing and reports the first event's sequence with `duplicate`.
   */
  async append(ref: TopicRef, stored: string, msgId: string, key: string | undefined): Promise<StreamAck> {
    const headers = new HeaderBlock().add(MSG_ID_HEADER, msgId);
    if (key !== undefined) headers.add(KEY_HEADER, encodeURIComponent(key));
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        await this.ensure(ref);
        return await this.acks.publish(ref.subject, stored, headers.forPublish);
      } catch (err) {
        if (isTopicFull(err)) throw await this.topicFull(ref);
        // Sending the same message again stores it at most once (the stream's duplicate window knows msgId), so a
        // store that may succeed on another try is tried again, for up to APPEND_RETRY_MS in all: after the
        // connection moved to another node of a cluster (if it is back within APPEND_RECONNECT_MS), while no stream
        // answers (its leader is being elected, or it was deleted behind our back: it is made again), when a try
        // got no ack within APPEND_TRY_TIMEOUT_MS, and while JetStream's API does not answer about the stream.
        if (err instanceof BusDropped) {
          if (await this.reconnected(APPEND_RECONNECT_MS)) continue;
          throw unavailable("storing the event", err);
        }
        if (err instanceof MigError && err.code !== "MIG_UNAVAILABLE") throw err; // a quota refusal of ensure()
        if (err instanceof AckError && err.why === "no_stream") this.streams.delete(ref.stream);
        const transient = err instanceof MigError || (err instanceof AckError && err.transient);
        const wait = Math.min(APPEND_BACKOFF_MAX_MS, APPEND_BACKOFF_MS * 2 ** attempt);
        if (!transient || Date.now() - started + wait > APPEND_RETRY_MS)
          throw err instanceof MigError ? err : unavailable("storing the event", err);
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  /** A full topic under discard `new`: room comes back as its oldest events age out, so that is when to retry. */
  private async topicFull(ref: TopicRef): Promise<MigError> {
    let retryAfterMs = 1000;
    try {
      const info = await this.bus.jsm.streams.info(ref.stream);
      const oldest = Date.parse(info.state.first_ts);
      if (Number.isFinite(oldest))
        retryAfterMs = Math.max(retryAfterMs, Math.ceil(oldest + this.options.maxAgeMs - Date.now()));
    } catch {
      // Without the topic's state the floor stands.
    }
    const { topicMaxBytes, topicMaxMsgs } = this.options;
    return new MigError(
      "MIG_BACKPRESSURE",
      `topic ${ref.topic} is full (at most ${topicMaxBytes} bytes and ${topicMaxMsgs} events, MIG_TOPIC_MAX_BYTES and MIG_TOPIC_MAX_MSGS) and takes new events as its oldest age out (MIG_EVENT_MAX_AGE_MS); retry in ${retryAfterMs} ms`,
      {
        retryable: true,
        details: {
          retry_after_ms: retryAfterMs,
          tenant: ref.tenant,
          topic: ref.topic,
          max_bytes: topicMaxBytes,
          max_msgs: topicMaxMsgs,
        },
      },
    );
  }

  /** The event_id of a stored event, for answering a duplicate PUBLISH with the first ack. */
  async eventIdAt(ref: TopicRef, seq: number): Promise<string> {
    try {
      const stored = await this.bus.jsm.streams.getMessage(ref.stream, { seq });
      const eventId = stored ? (stored.json<{ event_id?: unknown }>().event_id ?? "") : "";
      return typeof eventId === "string" ? eventId : "";
    } catch (err) {
      throw unavailable("reading the first event of a repeated publish", err);
    }
  }

  /** Publishes a live EventMessage onto the public subject for plain NATS subscribers (best effort). */
  fanOut(ref: TopicRef, eventJson: string, header: MessageHeader, key: string | undefined): void {
    const headers = new HeaderBlock().add(ORIGIN_HEADER, ORIGIN_RUNTIME);
    mirrorHeader(headers, header);
    if (key !== undefined) headers.add(KEY_HEADER, encodeURIComponent(key));
    // On the no-echo connection that also holds the NATS binding's PUBLISH subscription: never delivered back here.
    // A copy nats.js refuses is logged by the outbox (best effort: the event is stored).
    this.outbox.publish(ref.publicSubject, eventJson, { headers: headers.forPublish });
  }

  /** Moves a poison event to the dead-letter subject, with why and where it came from. */
  async deadLetter(ref: TopicRef, data: Uint8Array, sequence: number, reason: string): Promise<void> {
    const headers = natsHeaders();
    headers.append("Mig-Topic", ref.topic);
    headers.append("Mig-Tenant", ref.tenant);
    headers.append("Mig-Sequence", String(sequence));
    headers.append("Mig-Dead-Letter-Reason", reason.replace(/[\r\n]+/g, " ").slice(0, 300));
    await this.bus.js.publish(ref.deadLetterSubject, data, { headers, timeout: 10_000 });
  }
}

/** The server holds as many topics as it keeps (MIG_MAX_TOPICS), or as JetStream's storage can reserve bytes for. */
function serverTopicsFull(ref: TopicRef, maxTopics: number | undefined, topicMaxBytes?: number): MigError {
  const why =
    topicMaxBytes === undefined
      ? `this server already holds ${maxTopics} topics across all tenants, the most it keeps (MIG_MAX_TOPICS)`
      : `this server's JetStream storage cannot reserve ${topicMaxBytes} more bytes (MIG_TOPIC_MAX_BYTES) for another topic (nats-server's max_file_store)`;
  return new MigError(
    "MIG_RATE_LIMITED",
    `${why}; publish to an existing topic, or ask the operator to raise the limit or delete unused topics`,
    {
      retryable: false,
      details: { limit: maxTopics, tenant: ref.tenant, limit_scope: "server_topics" },
    },
  );
}

/** Mirrors the MIG header fields the NATS binding names into NATS headers (free-text values URI-encoded). */
function mirrorHeader(headers: HeaderBlock, header: MessageHeader): void {
  headers
    .add("mig_version", header.mig_version)
    .add("message_id", header.message_id)
    .add("tenant_id", header.tenant_id);
  if (header.session_id !== undefined) headers.add("session_id", encodeURIComponent(header.session_id));
  if (header.traceparent !== undefined) headers.add("traceparent", header.traceparent);
  if (header.idempotency_key !== undefined) headers.add("idempotency_key", encodeURIComponent(header.idempotency_key));
}
