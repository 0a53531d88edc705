// The gateway's view of the fleet: remote providers from the registry bucket and NATS micro services, with liveness, and CANCEL fan-out.

import type { KV } from "@nats-io/kv";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { openBucket } from "../bus/replicas.ts";
import { policyFingerprint } from "../policy/policy-fingerprint.ts";
import {
  DEFAULT_HEARTBEAT_MS,
  decode,
  directEligible,
  encode,
  FLEET_CANCEL_SUBJECT,
  GATEWAY_POLICY_PREFIX,
  type GatewayPolicyRecord,
  HELD_WILDCARD,
  LEAVE_WILDCARD,
  MAX_REGISTRATION_BYTES,
  MISSED_BEATS,
  REGISTER_WILDCARD,
  REGISTRAR_QUEUE,
  REGISTRY_BUCKET,
  REGISTRY_TTL_MS,
  type Registration,
  type RegistrationRefusal,
  readGatewayPolicy,
  readRegistration,
  usesWorkQueue,
} from "../protocol/provider-protocol.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { checkDescriptor } from "../provider/provider.ts";
import { CapabilityRegistry, type RegisteredCapability } from "../provider/registry.ts";
import { versionKey } from "../provider/versions.ts";
import { DirectWatch } from "./direct-watch.ts";
import { answerFleetCancel, type FleetCancelAnswer } from "./fleet-cancel.ts";
import type { FleetHost } from "./fleet-host.ts";
import { MicroAttach } from "./micro-attach.ts";
import type { ProviderEntry, RemoteCapability } from "./provider-entry.ts";
import { RegistrationReview } from "./registration-review.ts";
import { RemoteDispatcher } from "./remote-dispatch.ts";
import { remoteStreamHandler, remoteStreamsProviderGone } from "./remote-stream.ts";
import { handedOffStreamsProviderGone, streamHandOff } from "./stream-handoff.ts";
import { ensureWorkConsumer, ensureWorkStream } from "./work-queue.ts";

/** A gateway's auth settings as this runtime last heard them (docs/bindings/provider-protocol.md §9). */
export interface GatewayPolicy extends GatewayPolicyRecord {
  lastSeen: number;
  ttlMs: number;
}

/** A gateway's announcement of its policy; withdrawn when it stops serving the public subjects. */
export interface PolicyAnnouncement {
  withdraw(): Promise<void>;
}

const SWEEP_MS = 500;
/** This process's own registry record unseen for this long (a beat and a half) freezes liveness judgements. */
const REGISTRY_SILENCE_MS = (DEFAULT_HEARTBEAT_MS * 3) / 2;
/** Server ids of gateways that left, kept for taking over their idempotency claims. */
const GONE_SERVERS_KEPT = 1_024;
const CANCEL_FANOUT_WAIT_MS = 300;

/** A provider of the fleet's registry, for the admin console (Fleet.providerViews). */
export interface ProviderView {
  provider_id: string;
  kind: "worker" | "micro";
  capabilities: { id: string; version: string }[];
  /** How long since it was last heard of; past `ttl_ms` the fleet forgets it. */
  silent_ms: number;
  ttl_ms: number;
}

export class Fleet {
  readonly dispatcher: RemoteDispatcher;
  private readonly directWatch: DirectWatch;
  private readonly providers = new Map<string, ProviderEntry>();
  private readonly subscriptions: Subscription[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private lastSweep = Date.now();
  private skippedLate = false;
  private registry!: KV;
  private stopped = false;
  private stopWatch: (() => void) | undefined;
  private micro: MicroAttach | undefined;
  /** Queued capabilities (and versions) whose work consumer this runtime has already made sure of. */
  private readonly queuesReady = new Set<string>();
  /** What this runtime, as the registrar, lets into the registry (runtime/fleet/registration-review.ts). */
  private readonly review: RegistrationReview;
  /** The live gateways' policies, by runtime instance; a direct-lane worker answers only under the same one. */
  private readonly gateways = new Map<string, GatewayPolicy>();
  private readonly goneServers = new Set<string>();
  private readonly policyListeners = new Set<() => void>();
  private announcement: PolicyAnnouncement | undefined;
  /**
   * When this process last saw its own policy record come back through its registry watch, once it writes one
   * every beat (a gateway serving the public subjects): the registry is then both written and read.
   */
  private lastEcho: number | undefined;
  private frozen = false;

  private constructor(private readonly runtime: FleetHost) {
    const { nc, js } = runtime.bus;
    this.dispatcher = new RemoteDispatcher(nc, js, runtime.metrics, runtime.logger);
    this.directWatch = new DirectWatch(nc, runtime.logger);
    this.review = new RegistrationReview(runtime, () => this.providers);
  }

  static async start(runtime: FleetHost): Promise<Fleet> {
    const fleet = new Fleet(runtime);
    await fleet.open();
    return fleet;
  }

  private async open(): Promise<void> {
    const { nc, kvm } = this.runtime.bus;
    this.subscriptions.push(
      nc.subscribe(FLEET_CANCEL_SUBJECT, {
        callback: (err, msg) => (err ? undefined : answerFleetCancel(this.runtime, msg)),
      }),
      nc.subscribe(HELD_WILDCARD, { callback: (err, msg) => (err ? undefined : this.directWatch.onNotice(msg)) }),
    );
    this.registry = await openBucket(kvm, this.runtime.bus.jsm, REGISTRY_BUCKET, this.runtime.config.jsReplicas, {
      history: 1,
      ttl: REGISTRY_TTL_MS,
    });
    this.subscriptions.push(
      nc.subscribe(REGISTER_WILDCARD, {
        queue: REGISTRAR_QUEUE,
        callback: (err, msg) => (err ? undefined : void this.onRegister(msg)),
      }),
      nc.subscribe(LEAVE_WILDCARD, {
        queue: REGISTRAR_QUEUE,
        callback: (err, msg) => (err ? undefined : void this.onLeave(msg)),
      }),
    );
    const ownPolicyKey = `${GATEWAY_POLICY_PREFIX}${this.runtime.instanceId}`;
    const watcher = await this.registry.watch();
    this.stopWatch = () => watcher.stop();
    void (async () => {
      for await (const entry of watcher) {
        if (entry.key.startsWith(GATEWAY_POLICY_PREFIX)) {
          if (entry.key === ownPolicyKey && entry.operation === "PUT" && this.lastEcho !== undefined)
            this.lastEcho = Date.now();
          this.onGatewayPolicy(
            entry.key,
            entry.operation === "PUT" ? entry.string() : undefined,
            entry.isUpdate ? Date.now() : Math.min(Date.now(), entry.created.getTime()),
          );
          continue;
        }
        if (entry.operation !== "PUT") {
          this.remove(entry.key, "left the registry");
          continue;
        }
        const record = readRegistration(entry.string());
        if (!record || record.provider_id !== entry.key) {
          this.runtime.metrics.providerReplies.inc({ reason: "garbage_registration" });
          this.runtime.logger.warn({ key: entry.key }, "registry entry is not a provider registration; ignored");
          continue;
        }
        // A replayed entry is as old as its write; a live update is news from now.
        const seen = entry.isUpdate ? Date.now() : Math.min(Date.now(), entry.created.getTime());
        this.upsert({
          provider_id: record.provider_id,
          kind: "worker",
          capabilities: record.capabilities.map((c) => ({ descriptor: c.descriptor, schemas: c.schemas })),
          lastSeen: seen,
          ttlMs: record.heartbeat_ms * MISSED_BEATS,
          fingerprint: JSON.stringify([record.capabilities, record.direct_from]),
          directFrom: record.direct_from,
          seq: record.seq,
          versionedSubjects: record.versioned_subjects === true,
        });
      }
    })().catch((err: unknown) => {
      if (!this.stopped) this.runtime.logger.error({ err: (err as Error).message }, "registry watch ended");
    });
    this.lastSweep = Date.now();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.micro = new MicroAttach(nc, this, this.runtime.logger);
    this.micro.start();
  }

  /** Adds a provider or renews its liveness; the registry changes only when its capabilities do. */
  upsert(entry: ProviderEntry): void {
    if (Date.now() - entry.lastSeen > entry.ttlMs) return;
    const known = this.providers.get(entry.provider_id);
    if (known?.seq !== undefined && entry.seq !== undefined && entry.seq < known.seq) return;
    this.providers.set(entry.provider_id, entry);
    if (!known)
      this.runtime.logger.info(
        {
          provider_id: entry.provider_id,
          kind: entry.kind,
          capabilities: entry.capabilities.map((c) => c.descriptor.id),
        },
        "provider joined",
      );
    if (!known || known.fingerprint !== entry.fingerprint) this.refresh();
  }

  remove(providerId: string, why: string): void {
    if (!this.providers.delete(providerId)) return;
    this.runtime.logger.info({ provider_id: providerId, why }, "provider gone");
    this.review.forget(providerId);
    this.dispatcher.providerGone(providerId);
    this.directWatch.providerGone(providerId);
    remoteStreamsProviderGone(this.runtime, providerId);
    handedOffStreamsProviderGone(this.runtime, providerId);
    this.refresh();
  }

  providerIds(): string[] {
    return [...this.providers.keys()];
  }

  /** The live providers as the admin console shows them: what each serves and when it was last heard of. */
  providerViews(now = Date.now()): ProviderView[] {
    return [...this.providers.values()].map((entry) => ({
      provider_id: entry.provider_id,
      kind: entry.kind,
      capabilities: entry.capabilities.map((c) => ({ id: c.descriptor.id, version: c.descriptor.version })),
      silent_ms: Math.max(0, now - entry.lastSeen),
      ttl_ms: entry.ttlMs,
    }));
  }

  /**
   * Publishes this runtime's policy fingerprint (runtime/policy/policy-fingerprint.ts) into the registry bucket and
   * renews it every beat, as a gateway serving the public subjects does: direct-lane workers compare theirs
   * with it. Resolves once the first record is written.
   */
  async announcePolicy(): Promise<PolicyAnnouncement> {
    if (this.announcement) return this.announcement;
    const fingerprint = policyFingerprint(this.runtime.config);
    const key = `${GATEWAY_POLICY_PREFIX}${this.runtime.instanceId}`;
    const record: GatewayPolicyRecord = {
      v: 1,
      instance_id: this.runtime.instanceId,
      server_id: this.runtime.serverId,
      heartbeat_ms: DEFAULT_HEARTBEAT_MS,
      auth_mode: fingerprint.auth_mode,
      parts: fingerprint.parts,
      digest: fingerprint.digest,
    };
    const put = () => this.registry.put(key, JSON.stringify(record));
    this.lastEcho ??= Date.now();
    try {
      await put();
    } catch (err) {
      // Not a reason to serve nothing: until a beat gets through, direct-lane workers only stay off.
      this.runtime.logger.warn(
        { err: (err as Error).message },
        "could not publish this gateway's auth settings to the registry; direct-lane workers stay off until a later beat does",
      );
    }
    const beat = setInterval(() => {
      put().catch((err: unknown) =>
        this.runtime.logger.debug(
          { err: (err as Error).message },
          "policy announcement not renewed; the next beat retries",
        ),
      );
    }, DEFAULT_HEARTBEAT_MS);
    beat.unref();
    const announcement: PolicyAnnouncement = {
      withdraw: async () => {
        clearInterval(beat);
        if (this.announcement !== announcement) return;
        this.announcement = undefined;
        this.lastEcho = undefined; // no more beats: their silence says nothing of the registry
        await this.registry.delete(key).catch(() => undefined);
      },
    };
    this.announcement = announcement;
    return announcement;
  }

  /**
   * Whether silence in the registry means anything now. Workers' heartbeats reach this process only through it, so
   * while it cannot be written (its leader died with a node of the cluster: seconds of election) or this process's
   * watch of it is being rebuilt (the watch's consumer was on that node), every worker goes silent at once. A
   * process that writes every beat sees that in its own record: while the record has not come back through the
   * watch for a beat and a half it judges nobody, and once it does, liveness counts from then.
   */
  private registryCurrent(now: number): boolean {
    if (this.lastEcho === undefined) return true;
    if (now - this.lastEcho > REGISTRY_SILENCE_MS) {
      if (!this.frozen)
        this.runtime.logger.warn(
          { since_ms: now - this.lastEcho },
          "registry silent (not written or not read); nobody is judged gone until it answers",
        );
      this.frozen = true;
      return false;
    }
    if (this.frozen) {
      this.frozen = false;
      for (const entry of this.providers.values()) entry.lastSeen = Math.max(entry.lastSeen, now);
      for (const entry of this.gateways.values()) entry.lastSeen = Math.max(entry.lastSeen, now);
      this.runtime.logger.info("registry answers again; liveness counts from now");
    }
    return true;
  }

  /** Whether this runtime's view of the registry holds `providerId`. */
  knows(providerId: string): boolean {
    return this.providers.has(providerId);
  }

  /** The policies of the gateways alive now. */
  gatewayPolicies(): GatewayPolicy[] {
    return [...this.gateways.values()];
  }

  /** Calls `listener` whenever a gateway's policy appears, changes or goes; returns the unsubscribe. */
  onGatewayPolicies(listener: () => void): () => void {
    this.policyListeners.add(listener);
    return () => this.policyListeners.delete(listener);
  }

  private onGatewayPolicy(key: string, text: string | undefined, seen: number): void {
    const instance = key.slice(GATEWAY_POLICY_PREFIX.length);
    const record = text === undefined ? undefined : readGatewayPolicy(text);
    const known = this.gateways.get(instance);
    if (!record || record.instance_id !== instance) {
      if (text !== undefined) this.runtime.logger.warn({ key }, "registry entry is not a gateway policy; ignored");
      if (known) this.gatewayGone(instance);
      return;
    }
    const entry: GatewayPolicy = { ...record, lastSeen: seen, ttlMs: record.heartbeat_ms * MISSED_BEATS };
    if (Date.now() - entry.lastSeen > entry.ttlMs) return;
    this.gateways.set(instance, entry);
    if (!known || known.digest !== entry.digest) this.policiesChanged();
  }

  private gatewayGone(instance: string): void {
    const gone = this.gateways.get(instance);
    if (!gone) return;
    this.gateways.delete(instance);
    this.goneServers.add(gone.server_id);
    // The newest ids are the ones whose claims may still be pending; a bounded memory of them is enough.
    if (this.goneServers.size > GONE_SERVERS_KEPT) this.goneServers.delete(this.goneServers.values().next().value!);
    this.policiesChanged();
  }

  /** Whether the gateway with this server id was live in this runtime's view of the fleet, and has left it. */
  serverGone(serverId: string): boolean {
    return this.goneServers.has(serverId);
  }

  private policiesChanged(): void {
    for (const listener of [...this.policyListeners]) {
      try {
        listener();
      } catch (err) {
        this.runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "gateway policy listener failed");
      }
    }
  }

  private sweep(): void {
    const now = Date.now();
    // A sweep that runs late ran after this process itself was stalled (GC, a busy machine): heartbeats that
    // arrived meanwhile still wait in its socket, and timers run before the event loop reads it. Such a sweep
    // judges nobody; the next one, after the socket was read, does (so a process that is always late still
    // judges at every other sweep).
    const late = now - this.lastSweep - SWEEP_MS;
    this.lastSweep = now;
    if (late > SWEEP_MS && !this.skippedLate) {
      this.skippedLate = true;
      return;
    }
    this.skippedLate = false;
    if (!this.registryCurrent(now)) return;
    for (const [id, entry] of this.providers) {
      if (now - entry.lastSeen > entry.ttlMs) this.remove(id, `no heartbeat for ${entry.ttlMs} ms`);
    }
    for (const [instance, entry] of this.gateways) {
      if (now - entry.lastSeen > entry.ttlMs) this.gatewayGone(instance);
    }
  }

  /** Rebuilds the remote part of the capability registry from the live providers: every version of each capability. */
  private refresh(): void {
    /** Per id and version: the capability (the newest provider's descriptor) and how its workers take work. */
    const chosen = new Map<string, Map<string, { capability: RemoteCapability; versioned: boolean }>>();
    // The earliest switch to a direct lane among the live workers of each capability: from then on a NATS
    // invoke reaches one of them straight, and this gateway must not also dispatch it (docs/bindings/nats.md).
    const direct = new Map<string, number>();
    // Workers first, newest last so that its descriptor wins; a micro service only fills gaps.
    const ordered = [...this.providers.values()].sort((a, b) =>
      a.kind === b.kind ? a.lastSeen - b.lastSeen : a.kind === "micro" ? -1 : 1,
    );
    for (const provider of ordered) {
      for (const capability of provider.capabilities) {
        try {
          checkDescriptor(capability.descriptor);
        } catch (err) {
          this.runtime.logger.warn(
            { provider_id: provider.provider_id, err: (err as Error).message },
            "provider registered an unusable descriptor",
          );
          continue;
        }
        const { id, version } = capability.descriptor;
        let versions = chosen.get(id);
        if (!versions) chosen.set(id, (versions = new Map()));
        const key = versionKey(version);
        // A version's work goes to its own subjects only when every provider of it takes work there.
        const versioned = (versions.get(key)?.versioned ?? true) && provider.versionedSubjects === true;
        versions.set(key, { capability, versioned });
        if (provider.directFrom !== undefined && directEligible(capability.descriptor)) {
          direct.set(id, Math.min(direct.get(id) ?? Infinity, provider.directFrom));
        }
      }
    }
    const { capabilities, schemas } = this.runtime;
    for (const id of capabilities.remoteIds()) {
      if (!chosen.has(id)) capabilities.setRemote(id, undefined);
      if (!direct.has(id)) capabilities.setDirect(id, undefined);
    }
    for (const [id, from] of direct) capabilities.setDirect(id, from);
    for (const [id, versions] of chosen) {
      const current = capabilities.remoteVersions(id);
      const next = new Map<string, RegisteredCapability>();
      let changed = current?.size !== versions.size;
      for (const [key, { capability, versioned }] of versions) {
        for (const [uri, schema] of Object.entries(capability.schemas ?? {})) {
          try {
            schemas.register(uri, schema);
          } catch (err) {
            this.runtime.logger.warn(
              { capability: id, uri, err: (err as Error).message },
              "provider schema refused; the registered one stays",
            );
          }
        }
        const route = capability.handler ? "micro" : versioned ? "versioned" : "plain";
        const known = current?.get(key);
        if (known && known.descriptor === capability.descriptor && known.route === route) {
          next.set(key, known);
          continue;
        }
        changed = true;
        next.set(key, this.remoteEntry(capability, versioned, route));
      }
      if (changed) capabilities.setRemote(id, next);
    }
  }

  /** The registry entry of a capability version remote providers serve: how this runtime reaches them. */
  private remoteEntry(capability: RemoteCapability, versioned: boolean, route: string): RegisteredCapability {
    const { descriptor } = capability;
    const entry = CapabilityRegistry.entryOf(
      descriptor,
      capability.handler ?? this.dispatcher.handlerFor(descriptor, versioned),
      // Workers stream too (runtime/fleet/remote-stream.ts); a micro service is unary only.
      capability.handler ? undefined : remoteStreamHandler(this.runtime, descriptor, versioned),
    );
    // NATS-bound streams skip the relay: the worker publishes their frames itself (runtime/fleet/stream-handoff.ts).
    entry.handOff = capability.handler ? undefined : streamHandOff(this.runtime, descriptor, versioned);
    entry.route = route;
    return entry;
  }

  /**
   * The registrar: a provider announces itself on `_MIG.provider.register.<id>` and one runtime of the
   * fleet writes the record into the registry bucket, so providers need no write access to KV. The key is
   * the subject's token and must equal the record's provider_id; binding ids to credentials would take
   * per-provider NATS users with rights on `_MIG.provider.*.<id>` only.
   */
  private async onRegister(msg: Msg): Promise<void> {
    const providerId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    const record =
      msg.data.length <= MAX_REGISTRATION_BYTES ? readRegistration(new TextDecoder().decode(msg.data)) : undefined;
    if (!record || record.provider_id !== providerId) {
      this.runtime.metrics.providerReplies.inc({ reason: "garbage_registration" });
      this.runtime.logger.warn(
        { provider_id: providerId.slice(0, 80), bytes: msg.data.length },
        "registration refused: not a registration record for this provider id",
      );
      return;
    }
    try {
      const outcome = await this.review.review(record);
      if (outcome.fresh.length > 0) {
        this.runtime.logger.warn(
          {
            provider_id: providerId,
            refused: outcome.fresh.map((r) => ({
              capability: r.capability,
              version: r.version,
              error: r.error.message,
            })),
          },
          "registrar left capabilities out of a registration (refused); the registry keeps serving what it had",
        );
      }
      if (outcome.refused.length > 0 && msg.reply) {
        const answer: RegistrationRefusal = { refused: outcome.refused };
        msg.respond(JSON.stringify(answer));
      }
      const accepted: Registration =
        outcome.refused.length === 0 ? record : { ...record, capabilities: outcome.accepted };
      await this.ensureQueues(providerId, accepted);
      await this.registry.put(providerId, outcome.refused.length === 0 ? msg.data : JSON.stringify(accepted));
    } catch (err) {
      this.runtime.logger.warn(
        { provider_id: providerId, err: (err as Error).message },
        "registration could not be recorded; the provider's next beat retries",
      );
    }
  }

  /**
   * Makes the work consumers of the registration's queued capabilities (each version's own too, for a provider
   * that takes work on versioned subjects). A provider already in the registry with this capability had its queue
   * made when it was first written: its heartbeats and lane switches are written at once, so a switch's instant is
   * still ahead when it lands.
   */
  private async ensureQueues(providerId: string, record: Registration): Promise<void> {
    const listed = this.providers.get(providerId)?.capabilities;
    for (const { descriptor } of record.capabilities) {
      if (!descriptor || !usesWorkQueue(descriptor)) continue;
      const versioned = record.versioned_subjects === true;
      const key = versioned ? `${descriptor.id}@${versionKey(descriptor.version)}` : descriptor.id;
      if (this.queuesReady.has(key)) continue;
      if (listed?.some((c) => c.descriptor.id === descriptor.id && c.descriptor.version === descriptor.version))
        continue;
      checkDescriptor(descriptor); // its id becomes a consumer's filter subject: no wildcards, no empty tokens
      await ensureWorkStream(this.runtime.bus.jsm, this.runtime.config.jsReplicas);
      await ensureWorkConsumer(this.runtime.bus.jsm, descriptor.id);
      if (versioned) await ensureWorkConsumer(this.runtime.bus.jsm, descriptor.id, descriptor.version);
      this.queuesReady.add(key);
    }
  }

  private async onLeave(msg: Msg): Promise<void> {
    const providerId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    await this.registry.delete(providerId).catch(() => undefined);
  }

  /** Asks the other runtimes whether one of them holds `target`; the holder cancels it and answers. */
  async cancelElsewhere(
    target: string,
    tenant: string,
    reason: string,
    request: RequestContext,
  ): Promise<FleetCancelAnswer | undefined> {
    const { principal } = request;
    // The caller travels with the question, so the holder applies the same cancel policy as a local CANCEL.
    const question = {
      target,
      tenant,
      reason,
      from: this.runtime.instanceId,
      subject: principal.subject,
      authenticated: principal.authenticated,
    };
    try {
      const replies = await this.runtime.bus.nc.requestMany(FLEET_CANCEL_SUBJECT, encode(question), {
        strategy: "count",
        maxMessages: 1,
        maxWait: CANCEL_FANOUT_WAIT_MS,
      });
      for await (const msg of replies) {
        if (msg.data.length === 0) continue;
        const answer = decode(msg.data) as FleetCancelAnswer;
        if (answer && typeof answer.status === "string") return answer;
      }
    } catch {
      // Nobody answered: no runtime holds it.
    }
    return undefined;
  }

  async stop(): Promise<void> {
    await this.announcement?.withdraw();
    this.stopped = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.micro?.stop();
    this.stopWatch?.();
    for (const sub of this.subscriptions) await sub.drain().catch(() => undefined);
  }
}
