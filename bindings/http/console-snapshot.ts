// The admin console's one aggregated view of this process (docs/console.md): capabilities and their providers, actors
// by kind and state, streams, subscriptions and their lag, error rates by code, the newest audit records.
import { type AdminView, adminTenant, checkTenant, type MigRuntime, type Subscription } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import { AUDIT_SHOWN, AuditTail } from "./console-audit.ts";
import { type ErrorRates, ErrorSampler } from "./console-errors.ts";

/** Rows a list (streams, subscriptions) shows by default, and at most: the rest is counted, not listed. */
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;
/** The longest-lived actors shown, and the newest ended ones. */
const ACTORS_LISTED = 10;
/** Topics whose newest sequence is read per snapshot (one JetStream request each): more leave their lag unknown. */
const MAX_TOPICS_READ = 100;
/** How long a topic's newest sequence may take to read before its lag is shown as unknown. */
const TOPIC_READ_MS = 2_000;
/** A snapshot made less than this long ago is the answer to the next request too. */
const REUSE_MS = 500;

/** What a caller asked for: `?tenant_id=` (one tenant) and `?limit=` (rows per list). */
export interface ConsoleQuery {
  tenant: string | undefined;
  limit: number;
}

const QUERY_FIELDS = new Set(["tenant_id", "limit"]);

/** Reads `?tenant_id=&limit=`; anything else, or a value out of range, is MIG_INVALID_REQUEST with what it takes. */
export function parseConsoleQuery(search: URLSearchParams): ConsoleQuery {
  for (const name of new Set(search.keys())) {
    if (!QUERY_FIELDS.has(name)) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `unknown query parameter "${name.slice(0, 40)}"; the console takes tenant_id and limit (docs/console.md)`,
      );
    }
    if (search.getAll(name).length > 1) {
      throw new MigError("MIG_INVALID_REQUEST", `the query parameter ${name} is given more than once; give it once`);
    }
  }
  const tenant = search.get("tenant_id") || undefined;
  if (tenant !== undefined) checkTenant(tenant, "tenant_id");
  const rawLimit = search.get("limit");
  let limit = DEFAULT_LIMIT;
  if (rawLimit !== null) {
    limit = /^\d{1,4}$/.test(rawLimit) ? Number(rawLimit) : Number.NaN;
    if (!(limit >= 1 && limit <= MAX_LIMIT)) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `limit must be an integer between 1 and ${MAX_LIMIT} (rows per list), got "${rawLimit.slice(0, 40)}"`,
      );
    }
  }
  return { tenant, limit };
}

/** What one snapshot shows: its tenant (undefined: every tenant), whether it is an operator's, rows per list. */
export interface ConsoleScope {
  tenant: string | undefined;
  operator: boolean;
  limit: number;
}

/** The scope `view` gets for `query`: a tenant-scoped admin sees its own tenant and may name no other. */
export function consoleScope(runtime: MigRuntime, view: AdminView, query: ConsoleQuery): ConsoleScope {
  const tenant = adminTenant(view, query.tenant, `show tenant "${query.tenant}"`, runtime.config.adminGlobalScope);
  return { tenant, operator: view.tenant === undefined, limit: query.limit };
}

/** A key per distinct scope: listeners with the same one share one encoded snapshot. */
export function scopeKey(scope: ConsoleScope): string {
  return `${scope.operator ? "o" : "t"}|${scope.limit}|${scope.tenant ?? ""}`;
}

/** What is read from the runtime once per snapshot, whoever asks: the per-scope views are cut from it. */
interface Collected {
  at: number;
  errors: ErrorRates;
  /** Newest sequence per topic (tenant + NUL + topic); missing: not read (unknown). */
  topicLast: Map<string, number>;
  subscriptions: Subscription[];
}

/** Who serves a capability: this process ("local"), a worker or a NATS micro service, and whether it is heard. */
interface ProviderRow {
  provider_id: string;
  kind: "local" | "worker" | "micro";
  silent_ms: number;
  health: "live" | "late";
}

const topicKey = (tenant: string, topic: string) => `${tenant}\u0000${topic}`;

const HIDDEN = (scope: string) => ({
  shown: false as const,
  reason: `carries no tenant: shown to the scope ${scope} only`,
});

/** One per runtime: the error samples and audit tails it keeps, and the last collection for reuse. */
export class ConsoleSnapshots {
  private readonly errors: ErrorSampler;
  private readonly audit: AuditTail;
  private collecting: Promise<Collected> | undefined;

  constructor(private readonly runtime: MigRuntime) {
    this.errors = new ErrorSampler(runtime);
    this.audit = new AuditTail(runtime);
  }

  /** The snapshot `view` may see, for `scope`. */
  async snapshot(view: AdminView, scope: ConsoleScope): Promise<Record<string, unknown>> {
    const collected = await this.collect();
    const { runtime } = this;
    const { tenant } = scope;
    const visible = (of: string) => tenant === undefined || of === tenant;
    let audit: Record<string, unknown>;
    try {
      audit = await this.audit.newest(view, tenant);
    } catch (err) {
      // The log may be away for a moment (the bus reconnecting): the rest of the snapshot still stands.
      const error = err instanceof MigError ? err : new MigError("MIG_UNAVAILABLE", "the audit log could not be read");
      audit = { records: [], error: { code: error.code, message: error.message } };
    }
    return {
      generated_at: new Date(collected.at).toISOString(),
      server_id: runtime.serverId,
      scope: { tenant_id: tenant ?? null, every_tenant: tenant === undefined, operator: scope.operator },
      limit: scope.limit,
      work: this.work(visible, tenant),
      capabilities: this.capabilities(view, visible, collected.at),
      actors: scope.operator ? this.actors() : HIDDEN(runtime.config.adminGlobalScope),
      streams: this.streams(visible, scope.limit),
      subscriptions: this.subscriptions(collected, visible, scope.limit),
      errors: scope.operator ? { shown: true, ...collected.errors } : HIDDEN(runtime.config.adminGlobalScope),
      audit: { shown_at_most: AUDIT_SHOWN, ...audit },
    };
  }

  /** Reads the runtime once for everyone asking within REUSE_MS. */
  private collect(): Promise<Collected> {
    const reusable = this.collecting;
    if (reusable) return reusable;
    const collecting = this.read();
    this.collecting = collecting;
    const forget = () => {
      if (this.collecting === collecting) this.collecting = undefined;
    };
    collecting.then(() => setTimeout(forget, REUSE_MS).unref(), forget);
    return collecting;
  }

  private async read(): Promise<Collected> {
    const at = Date.now();
    const subscriptions = this.runtime.subscriptions.list();
    // One read per topic, however many subscriptions share it; the busiest topics first when there are too many.
    const byTopic = new Map<string, Subscription>();
    const counts = new Map<string, number>();
    for (const s of subscriptions) {
      const key = topicKey(s.info.header.tenant_id, s.info.topic);
      if (!byTopic.has(key)) byTopic.set(key, s);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const chosen = [...byTopic.keys()].sort((a, b) => counts.get(b)! - counts.get(a)!).slice(0, MAX_TOPICS_READ);
    const topicLast = new Map<string, number>();
    await Promise.all(
      chosen.map(async (key) => {
        const last = await withinTime(byTopic.get(key)!.topicLast(), TOPIC_READ_MS);
        if (last !== undefined) topicLast.set(key, last);
      }),
    );
    return { at, errors: await this.errors.read(at), topicLast, subscriptions };
  }

  private work(visible: (tenant: string) => boolean, tenant: string | undefined) {
    const { runtime } = this;
    let streams = 0;
    for (const s of runtime.work.streams.values()) if (visible(s.tenant)) streams++;
    let subscriptions = 0;
    for (const s of runtime.subscriptions.list()) if (visible(s.info.header.tenant_id)) subscriptions++;
    return {
      invocations_in_flight: tenant === undefined ? runtime.work.invocations.size : runtime.work.invocationsOf(tenant),
      capacity: runtime.config.capacity,
      streams,
      subscriptions,
    };
  }

  private capabilities(view: AdminView, visible: (tenant: string) => boolean, now: number) {
    const { runtime } = this;
    const providers = runtime.fleet?.providerViews(now) ?? [];
    const inFlight = new Map<string, number>();
    for (const call of runtime.work.invocations.values()) {
      if (visible(call.tenant)) inFlight.set(call.capability, (inFlight.get(call.capability) ?? 0) + 1);
    }
    for (const stream of runtime.work.streams.values()) {
      if (visible(stream.tenant)) inFlight.set(stream.capability, (inFlight.get(stream.capability) ?? 0) + 1);
    }
    return runtime.capabilities
      .descriptors()
      .filter((d) => runtime.policy.adminSees(view, d.id))
      .map((d) => {
        const served: ProviderRow[] = providers
          .filter((p) => p.capabilities.some((c) => c.id === d.id && c.version === d.version))
          .map((p) => ({
            provider_id: p.provider_id,
            kind: p.kind,
            silent_ms: p.silent_ms,
            // A provider beats every third of its ttl: one that missed a beat and a half is late.
            health: p.silent_ms * 2 > p.ttl_ms ? "late" : "live",
          }));
        if (runtime.capabilities.local(d.id, d.version)) {
          served.unshift({ provider_id: runtime.serverId, kind: "local", silent_ms: 0, health: "live" });
        }
        const health = served.some((p) => p.health === "live") ? "ok" : served.length > 0 ? "late" : "no_provider";
        return {
          id: d.id,
          version: d.version,
          modes: d.modes,
          ...(d.lifecycle ? { lifecycle: d.lifecycle } : {}),
          health,
          providers: served,
          in_flight: inFlight.get(d.id) ?? 0,
        };
      });
  }

  private actors() {
    const { supervisor } = this.runtime;
    const byState = supervisor
      .tallyViews()
      .filter((t) => t.live > 0 || t.entered > 0)
      .sort((a, b) => compare(a.kind, b.kind) || b.live - a.live || compare(a.state, b.state));
    const finished = supervisor.recentlyFinished();
    const ends = new Map<string, { kind: string; state: string; count: number; last_ended_at: string }>();
    for (const f of finished) {
      const key = `${f.kind}\u0000${f.state}`;
      const known = ends.get(key);
      // Newest first: the first seen of each pair is its latest end.
      if (known) known.count++;
      else ends.set(key, { kind: f.kind, state: f.state, count: 1, last_ended_at: new Date(f.ended_at).toISOString() });
    }
    return {
      shown: true,
      live: supervisor.size,
      by_state: byState,
      oldest: supervisor.oldest(ACTORS_LISTED),
      recently_finished: {
        count: finished.length,
        by_state: [...ends.values()].sort((a, b) => compare(a.kind, b.kind) || b.count - a.count),
        newest: finished.slice(0, ACTORS_LISTED).map((f) => ({
          kind: f.kind,
          state: f.state,
          ended_at: new Date(f.ended_at).toISOString(),
          lived_ms: f.lived_ms,
        })),
      },
    };
  }

  private streams(visible: (tenant: string) => boolean, limit: number) {
    let total = 0;
    let paused = 0;
    const byState: Record<string, number> = {};
    const rows = [];
    for (const [messageId, stream] of this.runtime.work.streams) {
      if (!visible(stream.tenant)) continue;
      total++;
      const flow = stream.flow?.();
      const state = flow?.state ?? "handed_to_worker";
      byState[state] = (byState[state] ?? 0) + 1;
      if (flow?.paused) paused++;
      rows.push({
        message_id: messageId,
        tenant_id: stream.tenant,
        capability: stream.capability,
        runs_here: flow !== undefined,
        state,
        paused: flow?.paused ?? null,
        credit: flow?.credit ?? null,
        window: flow?.window ?? null,
        held: flow?.held ?? null,
      });
    }
    // The ones to look at first: paused, then those holding the most frames.
    rows.sort(
      (a, b) =>
        Number(b.paused === true) - Number(a.paused === true) ||
        (b.held ?? 0) - (a.held ?? 0) ||
        compare(a.message_id, b.message_id),
    );
    return { total, paused, by_state: byState, list: rows.slice(0, limit), truncated: rows.length > limit };
  }

  private subscriptions(collected: Collected, visible: (tenant: string) => boolean, limit: number) {
    let total = 0;
    let paused = 0;
    let lagTotal = 0;
    const rows = [];
    for (const subscription of collected.subscriptions) {
      const { info } = subscription;
      const tenant = info.header.tenant_id;
      if (!visible(tenant)) continue;
      const stats = subscription.stats();
      if (stats.state === "closed") continue;
      total++;
      if (stats.state === "paused") paused++;
      const topicLast = collected.topicLast.get(topicKey(tenant, info.topic));
      const lag = topicLast === undefined ? null : Math.max(0, topicLast - stats.last_sequence);
      lagTotal += lag ?? 0;
      rows.push({
        subscription_id: info.subscription_id,
        tenant_id: tenant,
        topic: info.topic,
        consumer_id: info.consumer_id ?? null,
        state: stats.state,
        last_sequence: stats.last_sequence,
        topic_last_sequence: topicLast ?? null,
        lag,
        delivered: stats.delivered,
        pauses: stats.pauses,
        max_inflight: info.max_inflight,
      });
    }
    // The furthest behind first; an unknown lag last.
    rows.sort((a, b) => (b.lag ?? -1) - (a.lag ?? -1) || compare(a.subscription_id, b.subscription_id));
    return { total, paused, lag_total: lagTotal, list: rows.slice(0, limit), truncated: rows.length > limit };
  }
}

const snapshots = new WeakMap<MigRuntime, ConsoleSnapshots>();

/** The console's snapshots of `runtime` (one keeper per runtime, made when first asked). */
export function consoleSnapshots(runtime: MigRuntime): ConsoleSnapshots {
  let known = snapshots.get(runtime);
  if (!known) snapshots.set(runtime, (known = new ConsoleSnapshots(runtime)));
  return known;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `promise`'s value, or undefined when it fails or takes longer than `ms`. */
async function withinTime<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}
