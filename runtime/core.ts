// What every operation needs from the runtime: its settings, registries, supervisor and bookkeeping.
import type { Actor } from "xstate";
import type { invocationMachine } from "../actors/invocation.ts";
import type { RuntimeConfig } from "./config.ts";
import type { IdempotencyStore } from "./idempotency.ts";
import type { LoadGauge } from "./load.ts";
import type { Logger } from "./logger.ts";
import type { Metrics } from "./metrics.ts";
import type { AccessPolicy } from "./policy.ts";
import type { Principal } from "./principal.ts";
import type { CapabilityRegistry } from "./registry.ts";
import type { SchemaRegistry } from "./schema-registry.ts";
import type { Supervisor } from "./supervisor.ts";
import type { BindingType, CancelStatus } from "./types.ts";

/** The part of the fleet an operation may use: CANCEL of an invocation held by another runtime. */
export interface FleetView {
  cancelElsewhere(target: string, tenant: string, reason: string, request: RequestContext): Promise<{ status: CancelStatus | "forbidden"; message?: string } | undefined>;
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
  /** Set by the policy once the request passed authorization (for the audit record's decision). */
  authorized?: boolean;
}

export interface InflightInvocation {
  tenant: string;
  subject: string;
  capability: string;
  actor: Actor<typeof invocationMachine>;
}

/** A live stream as CANCEL sees it (runtime/stream.ts holds the rest). */
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
  /** Scopes, tenant allow lists, rate limits, cancel and admin rules (runtime/policy.ts). */
  policy: AccessPolicy;
  /** Invocations in flight in this process, by message_id (the target of CANCEL). */
  inflight: Map<string, InflightInvocation>;
  /** Streams in flight in this process, by the message_id of their request (the target of CANCEL). */
  streams: Map<string, InflightStream>;
  /** Recently finished message ids with their tenant, so CANCEL can say "already_completed". */
  finished: RecentlyFinished;
  /** Other runtime processes on the same bus, when this runtime watches the fleet. */
  fleet?: FleetView | undefined;
}

/** A bounded memory of finished message ids: the oldest are forgotten first. */
export class RecentlyFinished {
  private readonly ids = new Map<string, string>();
  /**
   * The ids in the order they were first added, from `head` on. The oldest is found here rather than with
   * `ids.keys().next()`: a Map that is deleted from the front walks over its deleted entries until it
   * rehashes, which made this 6 % of an in-process invoke (docs/decisions.md).
   */
  private order: (string | undefined)[] = [];
  private head = 0;

  constructor(private readonly limit = 10_000) {}

  add(messageId: string, tenant: string): void {
    const known = this.ids.has(messageId);
    this.ids.set(messageId, tenant);
    if (known) return;
    this.order.push(messageId);
    if (this.ids.size > this.limit) {
      this.ids.delete(this.order[this.head]!);
      this.order[this.head++] = undefined;
      if (this.head >= this.limit) {
        this.order = this.order.slice(this.head);
        this.head = 0;
      }
    }
  }

  tenantOf(messageId: string): string | undefined {
    return this.ids.get(messageId);
  }
}
