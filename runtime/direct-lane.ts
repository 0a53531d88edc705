// Worker side of the direct lane: a `mig worker` answers the public NATS invoke subjects of its best_effort
// unary capabilities itself, so a NATS caller's request crosses the bus once instead of twice (through a
// gateway and then the internal work subject). Why and what it costs: docs/bindings/provider-protocol.md §9.
import type { Msg } from "@nats-io/transport-node";
import { startNatsBinding, type NatsBinding } from "../bindings/nats/server.ts";
import { SUBJECT_ROOT } from "../bindings/nats/subjects.ts";
import { ACCEPT_NOTICE_MS, DIRECT_QUEUE, heldSubject, type HeldNotice } from "./provider-protocol.ts";
import type { MigRuntime } from "./runtime.ts";

/** How often running requests are checked for the held notice; a notice is at most this late. */
const SWEEP_MS = 50;

export class DirectLane {
  /** Requests running now, in the order they started, with their start time. */
  private readonly running = new Map<Msg, number>();
  /** The subset of `running` the gateways have been told about. */
  private readonly held = new Set<Msg>();
  private sweeper: NodeJS.Timeout | undefined;
  private joining: NodeJS.Timeout | undefined;
  private binding: NatsBinding | undefined;
  private closed = false;

  private constructor(
    private readonly runtime: MigRuntime,
    private readonly providerId: string,
    private readonly capabilities: string[],
  ) {}

  /**
   * Checks now that the bus lets this worker subscribe to the invoke subjects of `capabilities` (it throws
   * if not), and joins their queue group at `from` (epoch ms): the instant named in the worker's
   * registration, when every gateway stops dispatching those invokes itself. Not before: NATS hands a
   * queue group's messages to any member, and a member that declined would leave a request unanswered
   * once the gateways have switched for an earlier worker of the capability.
   */
  static async open(runtime: MigRuntime, providerId: string, capabilities: string[], from: number): Promise<DirectLane> {
    const lane = new DirectLane(runtime, providerId, capabilities);
    // In a queue group of its own, so the probe takes no request from the workers that already answer.
    const probe = await lane.subscribe(`${DIRECT_QUEUE}-probe`, () => false);
    await probe.close();
    lane.joining = setTimeout(() => void lane.join(), Math.max(0, from - Date.now()));
    lane.sweeper = setInterval(() => lane.sweep(), SWEEP_MS);
    lane.sweeper.unref();
    return lane;
  }

  private subscribe(queue: string, accepts: () => boolean): Promise<NatsBinding> {
    return startNatsBinding(this.runtime, this.runtime.authenticator, {
      queue,
      subjects: this.capabilities.map((id) => `${SUBJECT_ROOT}.*.invoke.${id}`),
      streams: false,
      acceptsInvoke: accepts,
      watch: { started: (msg) => this.running.set(msg, Date.now()), ended: (msg) => this.ended(msg) },
    });
  }

  private async join(): Promise<void> {
    if (this.closed) return;
    try {
      this.binding = await this.subscribe(DIRECT_QUEUE, () => true);
      if (this.closed) await this.binding.close();
      else this.runtime.logger.info({ provider_id: this.providerId, capabilities: this.capabilities }, "direct lane answering NATS invokes");
    } catch (err) {
      // The probe passed at start, so this is a bus that changed its mind: the worker's log says so.
      this.runtime.logger.error({ err: (err as Error).message }, "direct lane could not subscribe; NATS invokes of its capabilities go unanswered until it leaves");
    }
  }

  /** Stops taking requests (the worker is leaving); the ones already taken are still answered. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    clearTimeout(this.joining);
    await this.binding?.close();
  }

  private ended(msg: Msg): void {
    this.running.delete(msg);
    if (this.held.delete(msg)) this.notify({ reply: msg.reply, released: true });
  }

  /**
   * Tells the gateways about requests running longer than ACCEPT_NOTICE_MS: if this process dies, they
   * answer those callers MIG_UNAVAILABLE at once. Quick requests, the usual case, cost no message.
   */
  private sweep(): void {
    const threshold = Date.now() - ACCEPT_NOTICE_MS;
    for (const [msg, started] of this.running) {
      if (started > threshold) break; // started in order: the rest are younger
      if (this.held.has(msg)) continue;
      this.held.add(msg);
      const tenant = msg.subject.split(".", 3)[2];
      const messageId = msg.headers?.get("message_id") || undefined;
      this.notify({ reply: msg.reply, tenant_id: tenant, message_id: messageId });
    }
  }

  private notify(notice: HeldNotice): void {
    this.runtime.bus.nc.publish(heldSubject(this.providerId), JSON.stringify(notice));
  }
}
