// Worker side of the direct lane: a `mig worker` answers the public NATS invoke subjects of its best_effort
// unary capabilities itself, so a NATS caller's request crosses the bus once instead of twice (through a
// gateway and then the internal work subject). Why and what it costs: docs/bindings/provider-protocol.md §9.
// It answers with the worker's own authenticator and policy, so the worker opens it only while its auth
// settings equal every gateway's (worker/host.ts, runtime/policy/policy-fingerprint.ts).
import type { Msg } from "@nats-io/transport-node";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import {
  ACCEPT_NOTICE_MS,
  DECLINED_SUBJECT,
  type DeclinedNotice,
  DIRECT_HANDOFF_MS,
  DIRECT_QUEUE,
  type HeldNotice,
  heldSubject,
} from "../runtime/protocol/provider-protocol.ts";
import { capabilityOf, SUBJECT_ROOT } from "../runtime/protocol/subjects.ts";
import type { MigRuntime } from "../runtime/runtime.ts";
import type { MigError } from "../schemas/errors.ts";
import type { CallRecorder } from "./micro-stats.ts";

const invokeSubjects = (capabilities: string[]) => capabilities.map((id) => `${SUBJECT_ROOT}.*.invoke.${id}`);

/** How often running requests are checked for the held notice; a notice is at most this late. */
const SWEEP_MS = 50;

export class DirectLane {
  /** Requests running now, in the order they started, with their start time (`performance.now()`). */
  private readonly running = new Map<Msg, number>();
  /** The subset of `running` the gateways have been told about. */
  private readonly held = new Set<Msg>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  private answering: NodeJS.Timeout | undefined;
  private binding: NatsBinding | undefined;
  private leaving = false;

  private constructor(
    private readonly runtime: MigRuntime,
    private readonly providerId: string,
    private readonly calls: CallRecorder | undefined,
  ) {}

  /** Throws unless the bus lets this process subscribe to the invoke subjects of `capabilities`. */
  static async checkPermissions(runtime: MigRuntime, capabilities: string[]): Promise<void> {
    // In a queue group of its own, so the probe takes no request from the workers that already answer.
    const probe = await startNatsBinding(runtime, runtime.authenticator, {
      queue: `${DIRECT_QUEUE}-probe`,
      subjects: invokeSubjects(capabilities),
      streams: false,
      acceptsInvoke: () => false,
    });
    await probe.close();
  }

  /**
   * Joins the queue group of the invoke subjects of `capabilities`. A request is answered only from the
   * instant this runtime's view of the fleet names for its capability (the earliest `direct_from` of the
   * live direct-lane workers), the instant at which gateways, from the same registry, leave it to the workers.
   */
  static async open(
    runtime: MigRuntime,
    providerId: string,
    capabilities: string[],
    from: number,
    calls?: CallRecorder,
  ): Promise<DirectLane> {
    const lane = new DirectLane(runtime, providerId, calls);
    const registry = runtime.capabilities;
    // Whether the request just declined goes back to the gateways: set by acceptsInvoke, read by declined.
    let handBack = false;
    lane.binding = await startNatsBinding(runtime, runtime.authenticator, {
      queue: DIRECT_QUEUE,
      subjects: invokeSubjects(capabilities),
      streams: false,
      acceptsInvoke: (subject) => {
        // Leaving: the gateways may not have heard yet, and leave this request to the workers.
        handBack = lane.leaving;
        if (lane.leaving) return false;
        const id = capabilityOf(subject);
        // A capability registered in several versions is the gateways' to answer: they choose among the versions.
        if (registry.versions(id).length > 1) return false;
        // Its own instant if this runtime's view has lost the registration for a moment (a late heartbeat).
        const since = registry.directSince(id) ?? from;
        const now = Date.now();
        if (now >= since) return true;
        // The gateways leave it to the workers from DIRECT_HANDOFF_MS before the instant (their clocks may run a
        // little ahead): what comes near the instant goes back to them.
        handBack = now >= since - 2 * DIRECT_HANDOFF_MS;
        return false;
      },
      declined: (msg) => {
        if (handBack && msg.reply) lane.handBack(msg.reply);
      },
      watch: { started: (msg) => lane.started(msg), ended: (msg, error) => lane.ended(msg, error) },
    });
    // By this worker's own instant, at the latest, every request it is handed is its to answer.
    lane.answering = setTimeout(
      () => runtime.logger.info({ provider_id: providerId, capabilities }, "direct lane answering NATS invokes"),
      Math.max(0, from - Date.now()),
    );
    lane.answering.unref();
    return lane;
  }

  /**
   * Answers no more requests and hands each one it receives back to the gateways, which still leave them to the
   * lanes until they hear that this worker left: call it before the leave, and close() once every gateway heard it.
   */
  beginLeaving(): void {
    this.leaving = true;
  }

  /** Stops taking requests (the worker is leaving); the ones already taken are still answered. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    clearTimeout(this.answering);
    await this.binding?.close();
  }

  private started(msg: Msg): void {
    this.running.set(msg, performance.now());
    // Swept only while requests run: an idle worker keeps no timer waking it.
    if (!this.sweeper && !this.closed) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
  }

  private ended(msg: Msg, error: MigError | undefined): void {
    const started = this.running.get(msg);
    if (started !== undefined) this.calls?.record(capabilityOf(msg.subject), started, error);
    this.running.delete(msg);
    if (this.held.delete(msg)) this.notify({ reply: msg.reply, released: true });
  }

  /**
   * Tells the gateways about requests running longer than ACCEPT_NOTICE_MS: if this process dies, they
   * answer those callers MIG_UNAVAILABLE at once. Quick requests, the usual case, cost no message.
   */
  private sweep(): void {
    if (this.running.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const threshold = performance.now() - ACCEPT_NOTICE_MS;
    for (const [msg, started] of this.running) {
      if (started > threshold) break; // started in order: the rest are younger
      if (this.held.has(msg)) continue;
      this.held.add(msg);
      const tenant = msg.subject.split(".", 3)[2];
      const messageId = msg.headers?.get("message_id") || undefined;
      this.notify({ reply: msg.reply, tenant_id: tenant, message_id: messageId });
    }
  }

  private handBack(reply: string): void {
    const notice: DeclinedNotice = { reply };
    this.runtime.bus.nc.publish(DECLINED_SUBJECT, JSON.stringify(notice));
  }

  private notify(notice: HeldNotice): void {
    this.runtime.bus.nc.publish(heldSubject(this.providerId), JSON.stringify(notice));
  }
}
