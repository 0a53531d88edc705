// Prometheus metrics of one runtime: its own registry, so several runtimes can live in one process (tests).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Period of the event-loop delay samples behind nodejs_eventloop_lag_* (ms). */
const EVENT_LOOP_SAMPLE_MS = 100;

export interface TopicLabels {
  readonly tenant: string;
  readonly topic: string;
}

/** The labels of one capability version's calls (mig_capability_version_calls_total), made once per registered version. */
export interface VersionLabels {
  readonly capability: string;
  readonly version: string;
  readonly deprecated: "true" | "false";
}

/** Adds a tally to its counter and starts it again, so the map holds only topics counted since the last read. */
function reportTallies(tallies: Map<TopicLabels, number>, counter: Counter<"tenant" | "topic">): void {
  for (const [{ tenant, topic }, count] of tallies) counter.inc({ tenant, topic }, count);
  tallies.clear();
}

/** Counts one event of a topic in a tally. */
export function tally(tallies: Map<TopicLabels, number>, labels: TopicLabels): void {
  tallies.set(labels, (tallies.get(labels) ?? 0) + 1);
}

export class Metrics {
  readonly registry = new Registry();
  /** Set by the supervisor: brings mig_actors_live and mig_actor_transitions_total up to date before they are read. */
  collectActors: (() => void) | undefined;

  readonly actorsLive: Gauge<"kind" | "state"> = new Gauge({
    name: "mig_actors_live",
    help: "Live actors by kind and current state",
    labelNames: ["kind", "state"] as const,
    registers: [this.registry],
    collect: () => this.collectActors?.(),
  });
  readonly actorTransitions: Counter<"kind" | "state"> = new Counter({
    name: "mig_actor_transitions_total",
    help: "State entries of actors, by kind and state entered",
    labelNames: ["kind", "state"] as const,
    registers: [this.registry],
    collect: () => this.collectActors?.(),
  });
  readonly actorCrashes = new Counter({
    name: "mig_actor_crashes_total",
    help: "Actors that ended in an error the supervisor had to contain",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly streamsActive = new Gauge({
    name: "mig_streams_active",
    help: "Streaming invocations between their request and their terminal frame",
    registers: [this.registry],
  });
  readonly streamsPaused = new Gauge({
    name: "mig_streams_paused",
    help: "Streams whose provider waits for credit because the consumer is not reading",
    registers: [this.registry],
  });
  /**
   * Per-frame figures are counted in these plain fields and handed to prom-client when the registry is
   * read: a labelled prom-client call hashes its labels, and a stream frame made three of them on each side.
   */
  bufferedFrames = 0;
  readonly framesCounted = { out: 0, in: 0 };
  private readonly framesReported = { out: 0, in: 0 };

  readonly streamBufferedFrames: Gauge = new Gauge({
    name: "mig_stream_buffered_frames",
    help: "Frames of all streams held by this process: handed to a binding but not yet written out, or waiting for credit",
    registers: [this.registry],
    collect: () => this.streamBufferedFrames.set(this.bufferedFrames),
  });
  readonly streams = new Counter({
    name: "mig_streams_total",
    help: "Finished streams by capability and final state (completed, cancelled, failed, timed_out)",
    labelNames: ["capability", "outcome"] as const,
    registers: [this.registry],
  });
  readonly streamFrames: Counter<"direction"> = new Counter({
    name: "mig_stream_frames_total",
    help: "Stream frames by direction (out: to the caller, in: from the caller)",
    labelNames: ["direction"] as const,
    registers: [this.registry],
    collect: () => {
      for (const direction of ["out", "in"] as const) {
        const delta = this.framesCounted[direction] - this.framesReported[direction];
        if (delta > 0) this.streamFrames.inc({ direction }, delta);
        this.framesReported[direction] = this.framesCounted[direction];
      }
    },
  });
  readonly supervisorRestarts = new Counter({
    name: "mig_supervisor_restarts_total",
    help: "Supervised children restarted after dying (e.g. the embedded nats-server)",
    labelNames: ["child"] as const,
    registers: [this.registry],
  });
  readonly invocations = new Counter({
    name: "mig_invocations_total",
    help: "Finished invocations by capability and outcome",
    labelNames: ["capability", "outcome"] as const,
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: "mig_errors_total",
    help: "MIG errors answered, by code and operation",
    labelNames: ["code", "operation"] as const,
    registers: [this.registry],
  });
  readonly invocationSeconds = new Histogram({
    name: "mig_invocation_duration_seconds",
    help: "Time from accepting an invocation to its final state, by capability and tenant",
    labelNames: ["capability", "tenant"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly idempotentReplays = new Counter({
    name: "mig_idempotent_replays_total",
    help: "Invocations answered from the idempotency store instead of running the handler",
    labelNames: ["capability"] as const,
    registers: [this.registry],
  });
  /**
   * PUBLISH outcomes counted per topic in plain tallies (keyed by the topic's shared ref, runtime/store/events.ts) and
   * handed to prom-client when the registry is read, like the stream frames above: one labelled call per event
   * hashed its labels on the hot path.
   */
  readonly eventsCounted = { published: new Map<TopicLabels, number>(), deduplicated: new Map<TopicLabels, number>() };

  readonly eventsPublished: Counter<"tenant" | "topic"> = new Counter({
    name: "mig_events_published_total",
    help: "Events stored by PUBLISH, by tenant and topic (idempotent repeats not counted)",
    labelNames: ["tenant", "topic"] as const,
    registers: [this.registry],
    collect: () => reportTallies(this.eventsCounted.published, this.eventsPublished),
  });
  readonly eventsDeduplicated: Counter<"tenant" | "topic"> = new Counter({
    name: "mig_events_deduplicated_total",
    help: "PUBLISH repeats answered with the first ack (same idempotency key within the duplicate window)",
    labelNames: ["tenant", "topic"] as const,
    registers: [this.registry],
    collect: () => reportTallies(this.eventsCounted.deduplicated, this.eventsDeduplicated),
  });
  readonly eventsReplayed = new Counter({
    name: "mig_events_replayed_total",
    help: "Events delivered with replay: true, by tenant and topic",
    labelNames: ["tenant", "topic"] as const,
    registers: [this.registry],
  });
  readonly eventsDeadLettered = new Counter({
    name: "mig_events_dead_lettered_total",
    help: "Events moved to the dead-letter subject, by tenant and topic",
    labelNames: ["tenant", "topic"] as const,
    registers: [this.registry],
  });
  readonly subscriptionsActive = new Gauge({
    name: "mig_subscriptions_active",
    help: "Open subscriptions by binding",
    labelNames: ["binding"] as const,
    registers: [this.registry],
  });
  readonly subscriptionLag = new Gauge({
    name: "mig_subscription_lag_events",
    help: "Events of the topic not yet delivered to a subscription (JetStream consumer pending), per open subscription",
    labelNames: ["tenant", "topic", "consumer"] as const,
    registers: [this.registry],
  });
  readonly subscriptionBuffered = new Gauge({
    name: "mig_subscription_buffered_events",
    help: "Events pulled from JetStream and held by the runtime, not yet written to the subscriber, per open subscription",
    labelNames: ["tenant", "topic", "consumer"] as const,
    registers: [this.registry],
  });
  readonly subscriptionPauses = new Counter({
    name: "mig_subscription_pauses_total",
    help: "Times a subscription paused its consumer because the subscriber read too slowly",
    labelNames: ["binding"] as const,
    registers: [this.registry],
  });

  readonly natsDropped = new Counter({
    name: "mig_nats_requests_dropped_total",
    help: "Requests on public NATS subjects dropped unanswered, by reason (e.g. no reply subject)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly fairShareWaits = new Counter({
    name: "mig_fair_share_waits_total",
    help: "Operations that waited for their tenant's fair turn on a saturated runtime, by outcome (admitted, refused)",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly invocationsRequeued = new Counter({
    name: "mig_invocations_requeued_total",
    help: "at_least_once invocations with an idempotency key put on the work queue again after the gateway's bus connection came back",
    registers: [this.registry],
  });
  /**
   * Calls accepted per capability version, tallied by the entry's shared labels (runtime/provider/registry.ts) and
   * handed to prom-client when read, as for events: the series are as many as registered versions, which a
   * registry keeps few.
   */
  readonly versionCallsCounted = new Map<VersionLabels, number>();
  readonly capabilityVersionCalls: Counter<"capability" | "version" | "deprecated"> = new Counter({
    name: "mig_capability_version_calls_total",
    help: "Invocations and streams accepted, by capability, version, and whether that version is deprecated",
    labelNames: ["capability", "version", "deprecated"] as const,
    registers: [this.registry],
    collect: () => {
      for (const [labels, count] of this.versionCallsCounted) this.capabilityVersionCalls.inc(labels, count);
      this.versionCallsCounted.clear();
    },
  });
  readonly providerReplies = new Counter({
    name: "mig_provider_replies_rejected_total",
    help: "Replies of remote providers the runtime could not use, by reason (garbage, late or duplicate)",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  constructor() {
    // prom-client samples the event loop's delay with a timer of this period (default 10 ms): a timer that woke
    // every runtime process 100 times a second, idle or not, and on a busy machine each wake-up of a mostly idle
    // process costs far more than its work (docs/decisions.md, 'The event-loop lag metric samples every 100 ms').
    // Ten samples a second still show lag.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }
}
