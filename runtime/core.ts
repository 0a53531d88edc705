// What every operation needs from the runtime: its settings, registries, supervisor and bookkeeping.

import type { Actor } from "xstate";
import type { invocationLogic } from "../actors/invocation.ts";
import type { MigError } from "../schemas/errors.ts";
import type { BindingType, CancelStatus } from "../schemas/types.ts";
import type { RuntimeConfig } from "./base/config.ts";
import type { LoadGauge } from "./base/load.ts";
import type { Logger } from "./base/logger.ts";
import type { Metrics } from "./base/metrics.ts";
import type { Supervisor } from "./flow/supervisor.ts";
import type { FairShare } from "./policy/fair-share.ts";
import type { AccessPolicy } from "./policy/policy.ts";
import type { Principal } from "./protocol/principal.ts";
import type { CapabilityRegistry } from "./provider/registry.ts";
import type { SchemaRegistry } from "./provider/schema-registry.ts";
import type { IdempotencyStore } from "./store/idempotency.ts";

/** The part of the fleet an operation may use: CANCEL of an invocation held by another runtime. */
export interface FleetView {
  cancelElsewhere(
    target: string,
    tenant: string,
    reason: string,
    request: RequestContext,
  ): Promise<{ status: CancelStatus | "forbidden"; message?: string } | undefined>;
}

/** What a binding knows about a request besides its body. */
export interface RequestContext {
  principal: Principal;
  /** A tenant named by the transport itself (X-Tenant-ID, subject token, metadata), if any. */
  tenant?: string | undefined;
  binding: BindingType;
  /** Size of the request body on the wire, when the binding knows it. */
  bodyBytes?: number;
  /** When the transport stops waiting for the answer (epoch ms), e.g. a gRPC call's deadline. */
  deadlineAt?: number | undefined;
  /**
   * Aborts when the caller has gone (its connection closed, its call cancelled): a unary invocation is then
   * cancelled with the signal's reason, its provider's signal fires and its capacity is freed.
   */
  gone?: AbortSignal | undefined;
  /** Set by the policy once the request passed authorization (for the audit record's decision). */
  authorized?: boolean;
  /**
   * A refusal the caller is not told of: the answer is the one for a target that does not exist, so
   * that a caller cannot probe another tenant's live ids. Kept here for the audit record.
   */
  hiddenDenial?: MigError;
}

export interface InflightInvocation {
  tenant: string;
  subject: string;
  capability: string;
  actor: Actor<typeof invocationLogic>;
}

/** A live stream as CANCEL sees it (runtime/flow/stream.ts holds the rest). */
export interface InflightStream {
  tenant: string;
  subject: string;
  cancel(reason: string): void;
}

export interface RuntimeCore {
  config: RuntimeConfig;
  serverId: string;
  logger: Logger;
  metrics: Metrics;
  capabilities: CapabilityRegistry;
  schemas: SchemaRegistry;
  supervisor: Supervisor;
  idempotency: IdempotencyStore;
  load: LoadGauge;
  /** Scopes, tenant allow lists, rate limits, cancel and admin rules (runtime/policy/policy.ts). */
  policy: AccessPolicy;
  /** Invocations in flight in this process, by message_id (the target of CANCEL). */
  inflight: Map<string, InflightInvocation>;
  /** How many of `inflight` each tenant holds, for the per-tenant share of the capacity. */
  inflightByTenant: Map<string, number>;
  /** Tenants' turns while the event loop is saturated (runtime/policy/fair-share.ts). */
  fairShare: FairShare;
  /** Streams in flight in this process, by the message_id of their request (the target of CANCEL). */
  streams: Map<string, InflightStream>;
  /** Recently finished message ids with their tenant, so CANCEL can say "already_completed". */
  finished: RecentlyFinished;
  /** Other runtime processes on the same bus, when this runtime watches the fleet. */
  fleet?: FleetView | undefined;
}

/**
 * A bounded memory of finished message ids: the oldest are forgotten first, a generation at a time. Ids
 * go into the young generation; when it holds `limit` it becomes the old one and the previous old one
 * is dropped whole, so at least the newest `limit` ids are remembered, and at most twice that many.
 * Nothing is deleted entry by entry: that needed an order array beside the Map and a delete per add,
 * and a V8 Map keeps deleted entries until it rehashes (docs/decisions.md, 'Finished ids live in two
 * generations of Maps').
 */
export class RecentlyFinished {
  private young = new Map<string, string>();
  private old = new Map<string, string>();

  constructor(private readonly limit = 10_000) {}

  add(messageId: string, tenant: string): void {
    if (this.young.size >= this.limit) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(messageId, tenant);
  }

  tenantOf(messageId: string): string | undefined {
    return this.young.get(messageId) ?? this.old.get(messageId);
  }
}
