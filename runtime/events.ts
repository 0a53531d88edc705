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
import { headers as natsHeaders } from "@nats-io/transport-node";
import { HeaderBlock } from "./nats-header-block.ts";
import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { AckedPublisher, type StreamAck } from "./acked-publish.ts";
import { TurnBatch } from "./turn-batch.ts";
import { MigError } from "./errors.ts";
import type { Bus } from "./bus.ts";
import type { Logger } from "./logger.ts";
import type { MessageHeader } from "./types.ts";

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
}

const NANOS_PER_MS = 1_000_000;
/** How long a PUBLISH waits for JetStream's ack (also across a bus restart) before MIG_UNAVAILABLE. */
const APPEND_TIMEOUT_MS = 10_000;
/** JetStream's dedup header: a repeat within the stream's duplicate window stores nothing. */
const MSG_ID_HEADER = "Nats-Msg-Id";

export function unavailable(what: string, err: unknown): MigError {
  return new MigError("MIG_UNAVAILABLE", `the event store on the bus cannot be reached (${what}); retry shortly`, {
    details: { cause: err instanceof Error ? err.message : String(err) },
  });
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
  private readonly acks: AckedPublisher;
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
    this.outbox = new TurnBatch(bus.events, (err, subject) => logger.debug({ err: (err as Error).message, subject }, "events message could not be sent"));
    this.acks = new AckedPublisher(bus.events, APPEND_TIMEOUT_MS, this.outbox);
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
      num_replicas: 1,
    });
  }

  /** Creates the topic's stream on first use; later calls cost a map lookup. */
  ensure(ref: TopicRef): Promise<void> {
    let known = this.streams.get(ref.stream);
    if (!known) {
      known = this.createOrKeep({
        name: ref.stream,
        subjects: [ref.subject],
        description: `MIG events of topic ${ref.topic} for tenant ${ref.tenant}`,
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_age: this.options.maxAgeMs * NANOS_PER_MS,
        duplicate_window: this.options.duplicateWindowMs * NANOS_PER_MS,
        num_replicas: 1,
      }).catch((err: unknown) => {
        this.streams.delete(ref.stream);
        throw unavailable("creating the topic's stream", err);
      });
      this.streams.set(ref.stream, known);
    }
    return known;
  }

  private async createOrKeep(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      await this.bus.jsm.streams.info(config.name);
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      await this.bus.jsm.streams.add(config);
    } catch (err) {
      // Another runtime may have created it a moment ago.
      if (!/already in use/i.test(err instanceof Error ? err.message : String(err))) throw err;
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
    await this.ensure(ref);
    const headers = new HeaderBlock().add(MSG_ID_HEADER, msgId);
    if (key !== undefined) headers.add(KEY_HEADER, encodeURIComponent(key));
    try {
      return await this.acks.publish(ref.subject, stored, headers.forPublish);
    } catch (err) {
      // The stream may have been deleted behind our back: forget it, so the next publish recreates it.
      this.streams.delete(ref.stream);
      throw unavailable("storing the event", err);
    }
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

/** Mirrors the MIG header fields the NATS binding names into NATS headers (free-text values URI-encoded). */
function mirrorHeader(headers: HeaderBlock, header: MessageHeader): void {
  headers.add("mig_version", header.mig_version).add("message_id", header.message_id).add("tenant_id", header.tenant_id);
  if (header.session_id !== undefined) headers.add("session_id", encodeURIComponent(header.session_id));
  if (header.traceparent !== undefined) headers.add("traceparent", header.traceparent);
  if (header.idempotency_key !== undefined) headers.add("idempotency_key", encodeURIComponent(header.idempotency_key));
}
