// Gateway side of the provider protocol: sends one invocation over the bus and turns the reply into a result or a MigError.

import type { JetStreamClient } from "@nats-io/jetstream";
import { type Msg, type MsgHdrs, type NatsConnection, headers as natsHeaders, nuid } from "@nats-io/transport-node";
import { busCauseDetails, busDropped, MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { Logger } from "../base/logger.ts";
import type { Metrics } from "../base/metrics.ts";
import { tracing } from "../base/tracing.ts";
import { onConnectionChange } from "../bus/bus.ts";
import {
  type CancelNotice,
  cancelSubject,
  encode,
  jsWorkSubject,
  PROTOCOL_VERSION,
  principalOnWire,
  readWorkReply,
  replyPrefix,
  usesWorkQueue,
  versionedJsWorkSubject,
  versionedWorkSubject,
  type WorkRequest,
  workSubject,
} from "../protocol/provider-protocol.ts";
import type { InvocationContext, UnaryHandler } from "../provider/provider.ts";

/** Where one capability version's work goes. */
interface WorkRoute {
  capability: string;
  version: string;
  subject: string;
  /** On the JetStream work queue (at_least_once, exactly_once) rather than core request/reply. */
  queued: boolean;
  requeueable: boolean;
}

interface Pending {
  capability: string;
  messageId: string;
  resolve: (payload: JsonObject) => void;
  reject: (error: MigError) => void;
  provider: string | undefined;
  cleanup: () => void;
  /**
   * Puts the work on the queue again: set for at_least_once work with an idempotency key, which may run twice and
   * whose caller asked for retries (its key makes a second answer the same for the caller), not for exactly_once.
   */
  requeue?: (() => void) | undefined;
}

/** The answer of an invocation whose wait for its worker's reply died with the gateway's bus connection. */
const droppedWaiting = (entry: Pending): MigError =>
  busDropped(`waiting for the worker's answer to this invocation of ${entry.capability}`);

/** How long waiting invocations that may be queued again wait for a dropped connection to come back. */
const REQUEUE_RECONNECT_MS = 2_000;

/**
 * One per gateway process: a single wildcard reply subscription (`_MIG.provider.reply.<token>.*`) serves every
 * remote invocation, so a dispatch costs one publish and one map entry, no per-request subscription.
 */
export class RemoteDispatcher {
  private readonly pending = new Map<string, Pending>();
  private readonly byProvider = new Map<string, Set<string>>();
  private readonly prefix = replyPrefix(nuid.next());
  private seq = 0;
  /** Invocations failed when the connection dropped: their workers are told to stop once it is back. */
  private orphaned: CancelNotice[] = [];
  /** Invocations held over a dropped connection, queued again when it is back (within REQUEUE_RECONNECT_MS). */
  private held: string[] = [];
  private heldTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => (err ? undefined : this.onReply(msg)) });
    onConnectionChange(nc, (change) => (change === "disconnect" ? this.connectionDropped() : this.reconnected()));
  }

  /**
   * The handler of a capability version served by workers over the bus: on the subjects of its version when its
   * workers take work there (`versioned`), else on the capability's plain subjects.
   */
  handlerFor(descriptor: CapabilityDescriptor, versioned = false): UnaryHandler {
    const { id, version } = descriptor;
    const queued = usesWorkQueue(descriptor);
    const requeueable = descriptor.qos?.delivery_semantics === "at_least_once";
    const subject = queued
      ? versioned
        ? versionedJsWorkSubject(id, version)
        : jsWorkSubject(id)
      : versioned
        ? versionedWorkSubject(id, version)
        : workSubject(id);
    const route = { capability: id, version, subject, queued, requeueable };
    return (payload, context) => this.dispatch(route, payload, context);
  }

  /** Number of invocations waiting for a provider's reply. */
  get waiting(): number {
    return this.pending.size;
  }

  private dispatch(route: WorkRoute, payload: JsonObject, context: InvocationContext): Promise<JsonObject> {
    const { capability, queued, requeueable, subject } = route;
    const token = (++this.seq).toString(36);
    const reply = `${this.prefix}.${token}`;
    const { header, signal } = context;
    const request: WorkRequest = {
      v: PROTOCOL_VERSION,
      capability,
      // With tracing on, its traceparent is this process's handler span (runtime/ops/invoke.ts): the worker's continue it.
      header,
      payload,
      principal: principalOnWire(context.principal),
      deadline_at: Date.now() + header.deadline_ms,
      reply_to: reply,
      version: route.version,
    };
    return new Promise<JsonObject>((resolve, reject) => {
      const onAbort = () => {
        this.forget(token);
        const notice: CancelNotice = {
          message_id: header.message_id,
          reason: String((signal.reason as Error)?.message ?? "aborted"),
        };
        this.nc.publish(cancelSubject(header.message_id), encode(notice));
        reject(signal.reason as MigError);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const data = encode(request);
      // Traced work names its parent in a NATS header too, where tools that watch the bus read it.
      const headers = tracing.on ? traceHeaders(header.traceparent) : undefined;
      const enqueue = () =>
        this.js.publish(subject, data, headers && { headers }).catch((err: unknown) => {
          this.fail(
            token,
            new MigError(
              "MIG_UNAVAILABLE",
              `the work queue of capability ${capability} did not take the invocation; retry shortly`,
              {
                details: busCauseDetails(err),
                cause: err,
              },
            ),
          );
        });
      this.pending.set(token, {
        capability,
        messageId: header.message_id,
        resolve,
        reject,
        provider: undefined,
        cleanup: () => signal.removeEventListener("abort", onAbort),
        requeue: queued && requeueable && header.idempotency_key !== undefined ? enqueue : undefined,
      });
      if (queued) {
        enqueue();
      } else {
        this.nc.publish(subject, data, { reply, headers });
      }
    });
  }

  private onReply(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length + 1);
    const entry = this.pending.get(token);
    if (!entry) {
      this.metrics.providerReplies.inc({ reason: "late_or_duplicate" });
      this.logger.debug({ subject: msg.subject }, "provider reply for no waiting invocation (late or duplicate)");
      return;
    }
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      this.fail(
        token,
        new MigError("MIG_UNAVAILABLE", `no live worker takes work for capability ${entry.capability}; retry shortly`),
      );
      return;
    }
    const reply = readWorkReply(msg.data);
    if (!reply) {
      this.metrics.providerReplies.inc({ reason: "garbage" });
      this.logger.warn(
        { capability: entry.capability, bytes: msg.data.length },
        "provider answered something that is not a work reply",
      );
      this.fail(
        token,
        new MigError(
          "MIG_INTERNAL",
          `the provider of capability ${entry.capability} answered garbage; the runtime log has it`,
        ),
      );
      return;
    }
    if ("accepted" in reply) {
      entry.provider = reply.accepted;
      let tokens = this.byProvider.get(reply.accepted);
      if (!tokens) this.byProvider.set(reply.accepted, (tokens = new Set()));
      tokens.add(token);
      return;
    }
    this.forget(token);
    if (reply.ok) entry.resolve(reply.payload);
    else entry.reject(MigError.fromBody(reply.error));
  }

  /** A provider left the registry: every invocation it had accepted fails now, not at the deadline. */
  providerGone(providerId: string): void {
    const tokens = this.byProvider.get(providerId);
    if (!tokens) return;
    this.byProvider.delete(providerId);
    for (const token of tokens) {
      this.fail(
        token,
        new MigError("MIG_UNAVAILABLE", `the worker ${providerId} stopped while running this invocation; retry it`, {
          retryable: true,
          details: { provider_id: providerId },
        }),
      );
    }
  }

  /**
   * The connection lost its server: a worker's answer sent now reaches nobody (the reply subscription is renewed
   * only after the reconnect), so every waiting invocation fails at once with MIG_UNAVAILABLE, retryable, instead
   * of at its deadline. Its worker may still be running it: it is told to stop once the connection is back.
   */
  private connectionDropped(): void {
    for (const token of [...this.pending.keys()]) {
      const entry = this.pending.get(token)!;
      if (entry.requeue) {
        // It may run twice, and its caller's key makes that safe: queue it again if the connection is back soon
        // (a cluster client moves to another node in a fraction of a second), not fail it now.
        this.held.push(token);
        continue;
      }
      this.orphaned.push({
        message_id: entry.messageId,
        reason: "the gateway lost its bus connection while waiting for the answer",
      });
      this.fail(token, droppedWaiting(entry));
    }
    if (this.held.length > 0 && !this.heldTimer) {
      this.heldTimer = setTimeout(() => this.releaseHeld(false), REQUEUE_RECONNECT_MS);
      this.heldTimer.unref();
    }
  }

  private reconnected(): void {
    const notices = this.orphaned;
    this.orphaned = [];
    for (const notice of notices) this.nc.publish(cancelSubject(notice.message_id), encode(notice));
    this.releaseHeld(true);
  }

  /**
   * The invocations held over a dropped connection: queued again once it is back (the worker that ran the first
   * copy may still answer first; the second answer is then dropped as late), or failed if it is not back in time.
   */
  private releaseHeld(back: boolean): void {
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    const held = this.held;
    this.held = [];
    for (const token of held) {
      const entry = this.pending.get(token);
      if (!entry) continue; // answered, cancelled or past its deadline meanwhile
      if (back) {
        this.metrics.invocationsRequeued.inc();
        entry.requeue!();
      } else this.fail(token, droppedWaiting(entry));
    }
  }

  private fail(token: string, error: MigError): void {
    const entry = this.forget(token);
    entry?.reject(error);
  }

  private forget(token: string): Pending | undefined {
    const entry = this.pending.get(token);
    if (!entry) return undefined;
    this.pending.delete(token);
    entry.cleanup();
    if (entry.provider) this.byProvider.get(entry.provider)?.delete(token);
    return entry;
  }
}

/** A NATS header block with `traceparent`, or undefined without one. */
function traceHeaders(traceparent: string | undefined): MsgHdrs | undefined {
  if (traceparent === undefined) return undefined;
  const headers = natsHeaders();
  headers.set("traceparent", traceparent);
  return headers;
}
