// Provider side of the provider protocol: hosts capability definitions in a runtime process and takes their work from the bus.
import { hostname } from "node:os";
import type { JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { createInbox, type Msg, nuid, type Subscription } from "@nats-io/transport-node";
import type { InvocationOutcome } from "../actors/invocation.ts";
import { ensureWorkConsumer, ensureWorkStream } from "../runtime/fleet/work-queue.ts";
import { execute } from "../runtime/ops/invoke.ts";
import { type PolicyFingerprint, policyDifferences, policyFingerprint } from "../runtime/policy/policy-fingerprint.ts";
import {
  ACCEPT_NOTICE_MS,
  CANCEL_WILDCARD,
  consumerName,
  DEFAULT_HEARTBEAT_MS,
  DIRECT_HANDOFF_MS,
  DIRECT_SWITCH_MS,
  decode,
  directEligible,
  encode,
  leaveSubject,
  PROTOCOL_VERSION,
  principalFromWire,
  type Registration,
  type RegistrationRefusal,
  readWorkRequest,
  registerSubject,
  usesWorkQueue,
  versionedConsumerName,
  versionedWorkSubject,
  WORK_ACK_WAIT_MS,
  WORK_QUEUE,
  WORK_STREAM,
  type WorkReply,
  type WorkRequest,
  workSubject,
} from "../runtime/protocol/provider-protocol.ts";
import type { CapabilityDefinition } from "../runtime/provider/provider.ts";
import { versionKey } from "../runtime/provider/versions.ts";
import type { MigRuntime } from "../runtime/runtime.ts";
import { IDEMPOTENCY_BUCKET, IdempotencyStore } from "../runtime/store/idempotency.ts";
import { MigError } from "../schemas/errors.ts";
import type { JsonObject } from "../schemas/types.ts";
import { DirectLane } from "./direct-lane.ts";
import { WorkerMicroStats } from "./micro-stats.ts";
import { serveRemoteStreams, wrongVersion } from "./streams.ts";

export interface WorkerOptions {
  heartbeatMs?: number;
  /** Invocations this worker runs at once on the work-queue path (core work is bounded by the runtime's capacity). */
  concurrency?: number;
  /**
   * Answer NATS invokes of best_effort unary capabilities on the public subjects directly (default true), while
   * this worker's auth settings equal every live gateway's (runtime/policy/policy-fingerprint.ts).
   */
  direct?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long a starting worker waits to hear the gateways' settings before it reports ready without a lane. */
const GATEWAY_POLICY_WAIT_MS = 2_000;

/** One capability this worker serves: its definition and the subscriptions (or work-queue loop) that feed it. */
interface ServedCapability {
  definition: CapabilityDefinition;
  subscriptions: Subscription[];
  /** Whether this worker put the definition into its runtime's registry (and so takes it out again). */
  addedLocally: boolean;
}

/** Waits for `check` to hold, looking every 20 ms, for at most `limitMs`. */
async function until(check: () => boolean, limitMs: number): Promise<void> {
  for (const end = Date.now() + limitMs; !check() && Date.now() < end; ) await sleep(20);
}

export class WorkerHost {
  readonly providerId = `${hostname()
    .replace(/[^A-Za-z0-9_-]/g, "-")
    .slice(0, 40)}-${process.pid}-${nuid.next().slice(-8)}`;
  private readonly subscriptions: Subscription[] = [];
  /** The capabilities served now, by id; `update` changes them while the worker runs. */
  private readonly served = new Map<string, ServedCapability>();
  private readonly loops: Promise<void>[] = [];
  private readonly running = new Set<Promise<void>>();
  private stopped = false;
  private beat: NodeJS.Timeout | undefined;
  private doneRecords: KV | undefined;
  private readonly heartbeatMs: number;
  private readonly concurrency: number;
  private readonly direct: boolean;
  private directLane: DirectLane | undefined;
  /** Silences the streams gateways handed to this worker: on its leave, the gateways end them. */
  private leavingStreams: (() => void) | undefined;
  /** The instant named in the registration from which the direct lane answers (docs/bindings/provider-protocol.md §9). */
  private directFrom: number | undefined;
  /** This worker's auth settings, compared with the gateways' before its direct lane opens. */
  private readonly policy: PolicyFingerprint;
  /** Whether every live gateway (at least one) answers under this worker's policy. */
  private policyMatches = false;
  private laneOffReason: string | undefined;
  /** Whether the bus lets this worker answer the public invoke subjects of its capabilities (probed per set). */
  private laneAllowed = false;
  /** Lane reviews and capability updates, one at a time, in order. */
  private reviewing: Promise<void> = Promise.resolve();
  private streamOpens: ((definition: CapabilityDefinition) => Subscription[]) | undefined;
  /** Registrations sent so far (Registration.seq). */
  private registrations = 0;
  /** Where the registrar answers when it refuses some of this worker's capabilities. */
  private readonly refusals = createInbox();
  private stopWatchingPolicies: (() => void) | undefined;
  /** Answers `$SRV.PING|INFO|STATS` with the figures of the calls this worker ran (worker/micro-stats.ts). */
  private microStats: WorkerMicroStats | undefined;

  private constructor(
    private readonly runtime: MigRuntime,
    private readonly initial: CapabilityDefinition[],
    options: WorkerOptions,
  ) {
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.concurrency = options.concurrency ?? 64;
    this.direct = options.direct ?? true;
    this.policy = policyFingerprint(runtime.config);
  }

  static async start(
    runtime: MigRuntime,
    definitions: CapabilityDefinition[],
    options: WorkerOptions = {},
  ): Promise<WorkerHost> {
    const host = new WorkerHost(runtime, definitions, options);
    await host.open();
    return host;
  }

  get capabilities(): string[] {
    return [...this.served.keys()];
  }

  private get definitions(): CapabilityDefinition[] {
    return [...this.served.values()].map((s) => s.definition);
  }

  private async open(): Promise<void> {
    const { nc } = this.runtime.bus;
    this.microStats = await WorkerMicroStats.start(this.runtime, this.providerId, this.served);
    this.subscriptions.push(
      nc.subscribe(CANCEL_WILDCARD, { callback: (err, msg) => (err ? undefined : this.onCancel(msg)) }),
    );
    // A handed-off stream's caller may switch to a refreshed token: verified here only under the gateways' settings.
    const streams = serveRemoteStreams(this.runtime, [], this.providerId, () =>
      this.policyMatches ? this.runtime.authenticator : undefined,
    );
    this.subscriptions.push(...streams.subscriptions);
    this.leavingStreams = streams.leaving;
    this.streamOpens = streams.serve;
    this.subscriptions.push(
      nc.subscribe(this.refusals, { callback: (err, msg) => (err ? undefined : this.onRefused(msg)) }),
    );
    for (const definition of this.initial) await this.serveOrSay(definition);
    const direct = this.directEligible();
    this.laneAllowed = await this.laneAllowedFor(direct);
    await nc.flush();
    this.register();
    this.beat = setInterval(() => this.register(), this.heartbeatMs);
    const fleet = this.runtime.fleet;
    if (fleet) {
      // Whether this worker may verify tokens itself (a refreshed token on a handed-off stream) follows the
      // gateways' policies too; the lane, when it may have one, opens and closes with them.
      this.stopWatchingPolicies = fleet.onGatewayPolicies(() => this.review());
      this.review();
      if (this.laneAllowed && direct.length > 0) {
        // The worker is ready once its lane is: gateways leave these invokes to the lane from its switch instant,
        // so it must be in the lane's queue group by then. Gateways already running are in the registry's first
        // replay; with none yet, the lane opens later, when the first one publishes its settings.
        await until(() => this.stopped || fleet.gatewayPolicies().length > 0, GATEWAY_POLICY_WAIT_MS);
        await this.reviewing;
      }
    }
  }

  /**
   * Takes work for one more capability: its work subjects (or work-queue consumers) and its stream opens, each both
   * plain (`_MIG.work.<id>`, for gateways of earlier releases) and of its version (`_MIG.work.@<version>.<id>`, where
   * gateways send that version's work). Throws, taking nothing, when its runtime refuses the definition.
   */
  private async serve(definition: CapabilityDefinition): Promise<void> {
    const { nc, kvm } = this.runtime.bus;
    const { id, version } = definition.descriptor;
    // Local, even when the runtime's fleet view already lists other workers of the same capability.
    const addedLocally = !this.runtime.capabilities.local(id, version);
    if (addedLocally) this.runtime.capabilities.add(definition);
    const served: ServedCapability = { definition, subscriptions: [], addedLocally };
    this.served.set(id, served);
    if (usesWorkQueue(definition.descriptor)) {
      if (!this.doneRecords) {
        await ensureWorkStream(this.runtime.bus.jsm, this.runtime.config.jsReplicas);
        this.doneRecords = await kvm.open(IDEMPOTENCY_BUCKET);
      }
      await ensureWorkConsumer(this.runtime.bus.jsm, id);
      await ensureWorkConsumer(this.runtime.bus.jsm, id, version);
      this.loops.push(this.pull(id, consumerName(id), served));
      this.loops.push(this.pull(id, versionedConsumerName(id, version), served));
    } else {
      for (const subject of [workSubject(id), versionedWorkSubject(id, version)]) {
        served.subscriptions.push(
          nc.subscribe(subject, {
            queue: WORK_QUEUE,
            callback: (err, msg) => (err ? undefined : this.track(this.run(msg.data, msg.reply, undefined))),
          }),
        );
      }
    }
    served.subscriptions.push(...(this.streamOpens?.(definition) ?? []));
  }

  /** Stops taking work for a capability; invocations of it already running finish. */
  private async unserve(id: string): Promise<void> {
    const served = this.served.get(id);
    if (!served) return;
    this.served.delete(id); // its work-queue loop, if any, ends at its next fetch
    if (served.addedLocally) this.runtime.capabilities.remove(id, served.definition.descriptor.version);
    for (const sub of served.subscriptions) await sub.drain().catch(() => undefined);
  }

  /**
   * The registrar left some of this worker's capabilities out of the registry (runtime/fleet/registration-review.ts):
   * a contract that breaks another version, a schema that cannot be registered. Says so, and stops serving them.
   */
  private onRefused(msg: Msg): void {
    let answer: RegistrationRefusal;
    try {
      answer = msg.json<RegistrationRefusal>();
    } catch {
      return;
    }
    if (!Array.isArray(answer?.refused)) return;
    const refused = answer.refused.filter(
      (r) => this.served.get(r.capability)?.definition.descriptor.version === r.version,
    );
    if (refused.length === 0) return;
    for (const r of refused) {
      this.runtime.logger.error(
        { capability: r.capability, version: r.version, code: r.error?.code, details: r.error?.details },
        `registration refused: ${r.error?.message}; this worker does not serve ${r.capability} ${r.version}`,
      );
    }
    const gone = new Set(refused.map((r) => r.capability));
    void this.update(this.definitions.filter((d) => !gone.has(d.descriptor.id))).catch(() => undefined);
  }

  /**
   * Serves exactly `definitions` from now on: capabilities that are new are taken up, those missing are left, and
   * a definition that replaces another of the same id takes over its subscriptions (no moment without a
   * subscriber). The registration follows; when the set of direct-lane capabilities changed, the lane is left
   * and opened again on the new set with a new switch instant (docs/bindings/provider-protocol.md §9), as when
   * the gateways' settings change. Resolves once the registration is sent.
   */
  update(definitions: CapabilityDefinition[]): Promise<void> {
    const done = this.reviewing.then(() => this.applyDefinitions(definitions));
    this.reviewing = done.catch((err: unknown) => {
      this.runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "capability update failed");
    });
    return done;
  }

  private async applyDefinitions(definitions: CapabilityDefinition[]): Promise<void> {
    if (this.stopped) return;
    const next = new Map(definitions.map((d) => [d.descriptor.id, d]));
    if (next.size !== definitions.length) throw new Error("a worker's capabilities need distinct ids");
    const laneBefore = this.directEligible().join(" ");
    let changed = false;
    for (const [id, served] of [...this.served]) {
      const replacement = next.get(id);
      if (replacement === served.definition) continue;
      changed = true;
      if (replacement && sameSubscriptions(replacement, served.definition) && served.addedLocally) {
        // The subscriptions look the capability up by id for every request: swapping the entry is enough.
        const { version } = served.definition.descriptor;
        this.runtime.capabilities.remove(id, version);
        try {
          this.runtime.capabilities.add(replacement);
          served.definition = replacement;
        } catch (err) {
          this.runtime.capabilities.add(served.definition);
          this.runtime.logger.error(
            { capability: id, version: replacement.descriptor.version, err: (err as Error).message },
            `capability refused: ${(err as Error).message}; the worker keeps serving ${id} ${version}`,
          );
        }
        continue;
      }
      await this.unserve(id);
    }
    for (const definition of definitions) {
      if (this.served.has(definition.descriptor.id)) continue;
      changed = true;
      await this.serveOrSay(definition);
    }
    if (!changed) return;
    await this.runtime.bus.nc.flush();
    const direct = this.directEligible();
    if (direct.join(" ") !== laneBefore) {
      const lane = this.directLane;
      this.directLane = undefined;
      await lane?.close();
      this.directFrom = undefined;
      this.laneAllowed = await this.laneAllowedFor(direct);
    }
    this.register();
    this.runtime.logger.info(
      { provider_id: this.providerId, capabilities: this.capabilities },
      "worker capabilities changed",
    );
    if (this.runtime.fleet) await this.applyPolicies(this.laneCapabilities());
  }

  /** Serves a definition, or says why its runtime refused it: one refused definition leaves the others served. */
  private async serveOrSay(definition: CapabilityDefinition): Promise<void> {
    try {
      await this.serve(definition);
    } catch (err) {
      const { id, version } = definition.descriptor;
      this.runtime.logger.error(
        { capability: id, version, err: (err as Error).message, details: (err as MigError).details },
        `capability refused: ${(err as Error).message}; the worker serves the others`,
      );
    }
  }

  /** The served capabilities a direct lane would answer (best_effort unary), when this worker opens lanes at all. */
  private directEligible(): string[] {
    if (!this.direct) return [];
    return this.definitions.filter((d) => directEligible(d.descriptor)).map((d) => d.descriptor.id);
  }

  private laneCapabilities(): string[] {
    return this.laneAllowed ? this.directEligible() : [];
  }

  /** Whether this worker can answer the public invoke subjects of `direct` itself (warns when it cannot). */
  private async laneAllowedFor(direct: string[]): Promise<boolean> {
    if (direct.length === 0) return false;
    if (!this.runtime.fleet) {
      this.runtime.logger.warn(
        "direct lane needs the runtime's view of the fleet (started with fleet: false); NATS invokes go through the gateways",
      );
      return false;
    }
    try {
      await DirectLane.checkPermissions(this.runtime, direct);
      return true;
    } catch (err) {
      // The registration then names no switch: gateways keep dispatching these invokes over the work subjects.
      this.runtime.logger.warn(
        { err: (err as Error).message },
        "direct lane unavailable; NATS invokes reach this worker through the gateways",
      );
      return false;
    }
  }

  /**
   * Compares this worker's policy fingerprint with every live gateway's (runtime/fleet/fleet.ts) and opens or closes
   * the direct lane to match: a request is answered under the gateways' auth settings or not by this worker
   * at all. One review at a time, in order; each waits for the one before.
   */
  private review(): void {
    this.reviewing = this.reviewing
      .then(() => this.applyPolicies(this.laneCapabilities()))
      .catch((err: unknown) => {
        this.runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "direct lane review failed");
      });
  }

  private async applyPolicies(direct: string[]): Promise<void> {
    if (this.stopped) return;
    const gateways = this.runtime.fleet?.gatewayPolicies() ?? [];
    const differing = gateways.filter((g) => g.digest !== this.policy.digest);
    this.policyMatches = gateways.length > 0 && differing.length === 0;
    if (direct.length === 0) return;
    if (this.policyMatches) {
      this.laneOffReason = undefined;
      if (this.directFrom !== undefined) return;
      // Once the registry holds this worker (its first registration made its queues), the registration with the
      // switch is written without delay, so its instant is still ahead when gateways read it.
      await until(() => this.stopped || this.runtime.fleet?.knows(this.providerId) === true, 10_000);
      if (this.stopped) return;
      // Far enough ahead for every gateway to hear of it before it comes (docs/bindings/provider-protocol.md §9).
      const from = Date.now() + DIRECT_SWITCH_MS;
      this.directFrom = from;
      this.register();
      // Join the queue group once this runtime's own view of the fleet holds this registration (and so every
      // earlier one): from then on it declines exactly what the gateways, from the same view, still answer.
      const capabilities = this.runtime.capabilities;
      await until(() => this.stopped || direct.every((id) => capabilities.directSince(id) !== undefined), 10_000);
      if (this.stopped) return;
      this.directLane = await DirectLane.open(this.runtime, this.providerId, direct, from, this.microStats);
      return;
    }
    // Off: the public subjects are the gateways'. The lane is left first, then the registration drops its switch,
    // so that no request is answered under other settings (for the milliseconds until every gateway hears of
    // the change, one of these invokes may go unanswered, as when a direct-lane worker stops).
    const lane = this.directLane;
    this.directLane = undefined;
    lane?.beginLeaving();
    if (this.directFrom !== undefined) {
      this.directFrom = undefined;
      this.register();
    }
    if (lane) await this.closeWhenHeard(lane);
    const reason =
      gateways.length === 0
        ? "no gateway has published its auth settings yet"
        : differing.map((g) => `${g.server_id}: ${policyDifferences(this.policy, g).join(", ")}`).join("; ");
    if (reason === this.laneOffReason) return;
    this.laneOffReason = reason;
    if (gateways.length === 0) {
      this.runtime.logger.info(
        { capabilities: direct },
        "direct lane waiting: no gateway has published its auth settings yet; NATS invokes go through the gateways",
      );
    } else {
      this.runtime.logger.warn(
        {
          capabilities: direct,
          differing: differing.map((g) => ({ server_id: g.server_id, settings: policyDifferences(this.policy, g) })),
        },
        `direct lane off: this worker's auth settings differ from the gateways' (${reason}); start it with the same MIG_AUTH_MODE and MIG_JWT_* settings (and policy file, rate limits, cancel and admin scope settings) as the gateways; NATS invokes go through the gateways`,
      );
    }
  }

  /** Registration and heartbeat are one act: re-putting the record says "still alive". */
  private register(): void {
    const record: Registration = {
      v: PROTOCOL_VERSION,
      provider_id: this.providerId,
      heartbeat_ms: this.heartbeatMs,
      started_at: new Date().toISOString(),
      capabilities: this.definitions.map((d) => ({ descriptor: d.descriptor, schemas: d.schemas })),
      direct_from: this.directFrom,
      seq: ++this.registrations,
      versioned_subjects: true,
    };
    // Through the registrar (any runtime of the fleet), like a provider in another language: providers
    // need no write access to the registry bucket (docs/bindings/provider-protocol.md). Its refusals come back.
    this.runtime.bus.nc.publish(registerSubject(this.providerId), JSON.stringify(record), { reply: this.refusals });
  }

  /**
   * Pulls only as many messages as there are free slots, so nothing waits in a buffer while its ack timer runs.
   * Ends when the worker stops or no longer serves the capability.
   */
  private async pull(capability: string, consumerId: string, served: ServedCapability): Promise<void> {
    const consumer = await this.runtime.bus.js.consumers.get(WORK_STREAM, consumerId);
    while (!this.stopped && this.served.get(capability) === served) {
      const free = this.concurrency - this.running.size;
      if (free <= 0) {
        await Promise.race(this.running);
        continue;
      }
      try {
        const batch = await consumer.fetch({ max_messages: free, expires: 1000 });
        for await (const msg of batch) this.track(this.run(msg.data, undefined, msg));
      } catch (err) {
        if (this.stopped) return;
        this.runtime.logger.warn({ capability, err: (err as Error).message }, "work queue fetch failed; retrying");
        await sleep(250);
      }
    }
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  private onCancel(msg: Msg): void {
    let reason = "cancelled by the caller";
    try {
      const notice = decode(msg.data) as { reason?: unknown };
      if (typeof notice?.reason === "string") reason = notice.reason;
    } catch {
      this.runtime.metrics.providerReplies.inc({ reason: "garbage_cancel" });
    }
    const messageId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    this.runtime.work.invocations.get(messageId)?.actor.send({ type: "CANCEL", reason });
  }

  private async run(data: Uint8Array, replySubject: string | undefined, jsMsg: JsMsg | undefined): Promise<void> {
    const { nc } = this.runtime.bus;
    const since = performance.now();
    let request: WorkRequest;
    try {
      request = readWorkRequest(data);
    } catch (err) {
      this.runtime.metrics.providerReplies.inc({ reason: "garbage_work" });
      this.runtime.logger.warn({ err: (err as Error).message }, "work request refused");
      if (replySubject) nc.publish(replySubject, encode(errorReply(err as MigError)));
      jsMsg?.term();
      return;
    }
    const reply = (value: WorkReply) => {
      const to = request.reply_to ?? replySubject;
      if (to) nc.publish(to, encode(value));
      if (!("accepted" in value))
        this.microStats?.record(request.capability, since, value.ok ? undefined : value.error);
    };
    // Only what this worker serves now, in the version it serves: a capability it just left may still be listed as
    // another provider's, and another version of it is other workers' (on the plain subjects they all share).
    const served = this.served.get(request.capability);
    const entry = served && this.runtime.capabilities.local(request.capability, served.definition.descriptor.version);
    if (!served || !entry) {
      reply(errorReply(new MigError("MIG_UNSUPPORTED_CAPABILITY", `this worker does not serve ${request.capability}`)));
      jsMsg?.term();
      return;
    }
    if (typeof request.version === "string" && versionKey(request.version) !== versionKey(entry.descriptor.version)) {
      reply(errorReply(wrongVersion(request.version, served.definition)));
      jsMsg?.term();
      return;
    }
    const messageId = request.header.message_id;
    const remaining = request.deadline_at - Date.now();
    if (remaining <= 0) {
      // The caller stopped waiting: running the work now would only be a side effect nobody asked for.
      reply(errorReply(new MigError("MIG_TIMEOUT", `the deadline of ${messageId} passed before a worker took it`)));
      jsMsg?.ack();
      return;
    }
    if (this.runtime.work.invocations.has(messageId)) {
      jsMsg?.working(); // a redelivery of work this worker is still running: keep it, answer once
      return;
    }
    const doneKey =
      jsMsg &&
      this.doneRecords &&
      request.header.idempotency_key &&
      entry.descriptor.qos?.delivery_semantics === "exactly_once"
        ? `w.${IdempotencyStore.keyOf(request.header.tenant_id, request.capability, request.header.idempotency_key)}`
        : undefined;
    if (doneKey && jsMsg!.info.deliveryCount > 1) {
      const done = await this.doneRecords!.get(doneKey).catch(() => null);
      if (done && done.operation === "PUT") {
        // An earlier worker finished this key and died before acking: answer its result, do not run again.
        reply({ ok: true, payload: done.json<JsonObject>() });
        jsMsg!.ack();
        return;
      }
    }

    const progress = jsMsg
      ? setInterval(() => jsMsg.working(), Math.floor(WORK_ACK_WAIT_MS / 3))
      : setTimeout(() => reply({ accepted: this.providerId }), ACCEPT_NOTICE_MS);
    const header = { ...request.header, deadline_ms: remaining };
    let outcome: InvocationOutcome;
    try {
      outcome = await execute(this.runtime, entry, header, principalFromWire(request.principal), request.payload);
    } finally {
      clearInterval(progress);
      clearTimeout(progress);
    }
    if (doneKey && outcome.ok)
      await this.doneRecords!.put(doneKey, JSON.stringify(outcome.payload)).catch(() => undefined);
    reply(outcome.ok ? { ok: true, payload: outcome.payload } : errorReply(outcome.error));
    jsMsg?.ack();
  }

  /** Closes a leaving lane once the gateways have heard that it left (the registry's news takes milliseconds). */
  private async closeWhenHeard(lane: DirectLane): Promise<void> {
    await sleep(DIRECT_HANDOFF_MS);
    await lane.close();
  }

  /** Leaves the registry at once (DISCOVER drops it without waiting for missed beats), then finishes running work. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.beat) clearInterval(this.beat);
    this.stopWatchingPolicies?.();
    await this.reviewing;
    // The direct lane answers nothing from now on: what gateways still leave to it until they hear the leave below,
    // it hands back to them (or another direct worker of the capability takes it).
    const lane = this.directLane;
    lane?.beginLeaving();
    this.leavingStreams?.();
    this.runtime.bus.nc.publish(leaveSubject(this.providerId), "");
    await this.runtime.bus.nc.flush().catch(() => undefined);
    if (lane) await this.closeWhenHeard(lane);
    const subscriptions = [...this.subscriptions, ...[...this.served.values()].flatMap((s) => s.subscriptions)];
    for (const sub of subscriptions) await sub.drain().catch(() => undefined);
    await Promise.race([Promise.allSettled([...this.running]), sleep(5_000)]);
    await this.microStats?.stop();
  }
}

/** Whether two definitions of one capability are fed by the same subscriptions (work subject or queue, stream opens). */
function sameSubscriptions(a: CapabilityDefinition, b: CapabilityDefinition): boolean {
  return (
    usesWorkQueue(a.descriptor) === usesWorkQueue(b.descriptor) &&
    Boolean(a.stream) === Boolean(b.stream) &&
    versionKey(a.descriptor.version) === versionKey(b.descriptor.version)
  );
}

function errorReply(error: MigError): WorkReply {
  return {
    ok: false,
    error: (error instanceof MigError ? error : new MigError("MIG_INTERNAL", "the worker failed")).toJSON(),
  };
}
