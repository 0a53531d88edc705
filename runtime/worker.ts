// Provider side of the provider protocol: hosts capability definitions in a runtime process and takes their work from the bus.
import { hostname } from "node:os";
import { nanos, nuid, type Msg, type Subscription } from "@nats-io/transport-node";
import { AckPolicy, RetentionPolicy, StorageType, type JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { MigError } from "./errors.ts";
import { IDEMPOTENCY_BUCKET, IdempotencyStore } from "./idempotency.ts";
import { execute } from "./invoke.ts";
import { serveRemoteStreams } from "./remote-stream.ts";
import { DirectLane } from "./direct-lane.ts";
import {
  ACCEPT_NOTICE_MS,
  CANCEL_WILDCARD,
  consumerName,
  decode,
  DEFAULT_HEARTBEAT_MS,
  DIRECT_SWITCH_MS,
  directEligible,
  encode,
  jsWorkSubject,
  principalFromWire,
  readWorkRequest,
  leaveSubject,
  registerSubject,
  usesWorkQueue,
  WORK_ACK_WAIT_MS,
  WORK_MAX_DELIVER,
  WORK_QUEUE,
  WORK_STREAM,
  WORK_STREAM_SUBJECTS,
  workSubject,
  PROTOCOL_VERSION,
  type Registration,
  type WorkReply,
  type WorkRequest,
} from "./provider-protocol.ts";
import type { InvocationOutcome } from "../actors/invocation.ts";
import type { CapabilityDefinition } from "./provider.ts";
import type { MigRuntime } from "./runtime.ts";
import type { JsonObject } from "./types.ts";

export interface WorkerOptions {
  heartbeatMs?: number;
  /** Invocations this worker runs at once on the work-queue path (core work is bounded by the runtime's capacity). */
  concurrency?: number;
  /** Answer NATS invokes of best_effort unary capabilities on the public subjects directly (default true). */
  direct?: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `check` to hold, looking every 20 ms, for at most `limitMs`. */
async function until(check: () => boolean, limitMs: number): Promise<void> {
  for (const end = Date.now() + limitMs; !check() && Date.now() < end; ) await sleep(20);
}

export class WorkerHost {
  readonly providerId = `${hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40)}-${process.pid}-${nuid.next().slice(-8)}`;
  private readonly subscriptions: Subscription[] = [];
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

  private constructor(
    private readonly runtime: MigRuntime,
    private readonly definitions: CapabilityDefinition[],
    options: WorkerOptions,
  ) {
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.concurrency = options.concurrency ?? 64;
    this.direct = options.direct ?? true;
  }

  static async start(runtime: MigRuntime, definitions: CapabilityDefinition[], options: WorkerOptions = {}): Promise<WorkerHost> {
    const host = new WorkerHost(runtime, definitions, options);
    await host.open();
    return host;
  }

  get capabilities(): string[] {
    return this.definitions.map((d) => d.descriptor.id);
  }

  private async open(): Promise<void> {
    const { nc, kvm } = this.runtime.bus;
    for (const definition of this.definitions) {
      // Local, even when the runtime's fleet view already lists other workers of the same capability.
      if (!this.runtime.capabilities.hasLocal(definition.descriptor.id)) this.runtime.capabilities.add(definition);
    }
    this.subscriptions.push(nc.subscribe(CANCEL_WILDCARD, { callback: (err, msg) => (err ? undefined : this.onCancel(msg)) }));
    const streams = serveRemoteStreams(this.runtime, this.definitions, this.providerId);
    this.subscriptions.push(...streams.subscriptions);
    this.leavingStreams = streams.leaving;

    const queued = this.definitions.filter((d) => usesWorkQueue(d.descriptor));
    if (queued.length > 0) {
      await ensureWorkStream(this.runtime);
      this.doneRecords = await kvm.open(IDEMPOTENCY_BUCKET);
    }
    for (const definition of this.definitions) {
      const id = definition.descriptor.id;
      if (usesWorkQueue(definition.descriptor)) {
        await ensureWorkConsumer(this.runtime, id);
        this.loops.push(this.pull(id));
      } else {
        this.subscriptions.push(
          nc.subscribe(workSubject(id), {
            queue: WORK_QUEUE,
            callback: (err, msg) => (err ? undefined : this.track(this.run(msg.data, msg.reply, undefined))),
          }),
        );
      }
    }
    const direct = this.direct ? this.definitions.filter((d) => directEligible(d.descriptor)).map((d) => d.descriptor.id) : [];
    if (direct.length > 0 && !this.runtime.fleet) {
      this.runtime.logger.warn("direct lane needs the runtime's view of the fleet (started with fleet: false); NATS invokes go through the gateways");
    } else if (direct.length > 0) {
      try {
        await DirectLane.checkPermissions(this.runtime, direct);
        // Far enough ahead for every gateway to hear of it before it comes (docs/bindings/provider-protocol.md §9).
        this.directFrom = Date.now() + DIRECT_SWITCH_MS;
      } catch (err) {
        // The registration then names no switch: gateways keep dispatching these invokes over the work subjects.
        this.runtime.logger.warn({ err: (err as Error).message }, "direct lane unavailable; NATS invokes reach this worker through the gateways");
      }
    }
    await nc.flush();
    this.register();
    this.beat = setInterval(() => this.register(), this.heartbeatMs);
    if (this.directFrom !== undefined) {
      // Join the queue group once this runtime's own view of the fleet holds this registration (and so every
      // earlier one): from then on it declines exactly what the gateways, from the same view, still answer.
      const capabilities = this.runtime.capabilities;
      await until(() => direct.every((id) => capabilities.directSince(id) !== undefined), 10_000);
      this.directLane = await DirectLane.open(this.runtime, this.providerId, direct, this.directFrom);
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
    };
    // Through the registrar (any runtime of the fleet), like a provider in another language: providers
    // need no write access to the registry bucket (docs/bindings/provider-protocol.md).
    this.runtime.bus.nc.publish(registerSubject(this.providerId), JSON.stringify(record));
  }

  /** Pulls only as many messages as there are free slots, so nothing waits in a buffer while its ack timer runs. */
  private async pull(capability: string): Promise<void> {
    const consumer = await this.runtime.bus.js.consumers.get(WORK_STREAM, consumerName(capability));
    while (!this.stopped) {
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
    this.runtime.inflight.get(messageId)?.actor.send({ type: "CANCEL", reason });
  }

  private async run(data: Uint8Array, replySubject: string | undefined, jsMsg: JsMsg | undefined): Promise<void> {
    const { nc } = this.runtime.bus;
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
    };
    const entry = this.runtime.capabilities.get(request.capability);
    if (!entry) {
      reply(errorReply(new MigError("MIG_UNSUPPORTED_CAPABILITY", `this worker does not serve ${request.capability}`)));
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
    if (this.runtime.inflight.has(messageId)) {
      jsMsg?.working(); // a redelivery of work this worker is still running: keep it, answer once
      return;
    }
    const doneKey = jsMsg && this.doneRecords && request.header.idempotency_key && entry.descriptor.qos?.delivery_semantics === "exactly_once"
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
    if (doneKey && outcome.ok) await this.doneRecords!.put(doneKey, JSON.stringify(outcome.payload)).catch(() => undefined);
    reply(outcome.ok ? { ok: true, payload: outcome.payload } : errorReply(outcome.error));
    jsMsg?.ack();
  }

  /** Leaves the registry at once (DISCOVER drops it without waiting for missed beats), then finishes running work. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.beat) clearInterval(this.beat);
    // The direct lane first: while gateways still leave its invokes to this worker, another direct worker
    // of the capability takes them (or, if none, they go unanswered until the leave below is heard: ms).
    await this.directLane?.close();
    this.leavingStreams?.();
    this.runtime.bus.nc.publish(leaveSubject(this.providerId), "");
    await this.runtime.bus.nc.flush().catch(() => undefined);
    for (const sub of this.subscriptions) await sub.drain().catch(() => undefined);
    await Promise.race([Promise.allSettled([...this.running]), sleep(5_000)]);
  }
}

function errorReply(error: MigError): WorkReply {
  return { ok: false, error: (error instanceof MigError ? error : new MigError("MIG_INTERNAL", "the worker failed")).toJSON() };
}

/** The durable pull consumer that all providers of one queued capability share. */
export async function ensureWorkConsumer(runtime: MigRuntime, capability: string): Promise<void> {
  await runtime.bus.jsm.consumers.add(WORK_STREAM, {
    durable_name: consumerName(capability),
    filter_subject: jsWorkSubject(capability),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(WORK_ACK_WAIT_MS),
    max_deliver: WORK_MAX_DELIVER,
    max_ack_pending: 4096,
  });
}

/** The work-queue stream: file storage, so queued work survives a restart of the bus. */
export async function ensureWorkStream(runtime: MigRuntime): Promise<void> {
  const { jsm } = runtime.bus;
  try {
    await jsm.streams.info(WORK_STREAM);
    return;
  } catch {
    // Not there yet: create it below.
  }
  try {
    await jsm.streams.add({
      name: WORK_STREAM,
      subjects: [WORK_STREAM_SUBJECTS],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      max_age: nanos(24 * 3600 * 1000),
    });
  } catch (err) {
    // Another worker created it in the meantime.
    await jsm.streams.info(WORK_STREAM).catch(() => {
      throw err;
    });
  }
}
