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
import type { BindingType } from "./types.ts";

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
  /** Recently finished message ids with their tenant, so CANCEL can say "already_completed". */
  finished: RecentlyFinished;
}

/** A bounded memory of finished message ids: the oldest are forgotten first. */
export class RecentlyFinished {
  private readonly ids = new Map<string, string>();

  constructor(private readonly limit = 10_000) {}

  add(messageId: string, tenant: string): void {
    this.ids.set(messageId, tenant);
    if (this.ids.size > this.limit) this.ids.delete(this.ids.keys().next().value!);
  }

  tenantOf(messageId: string): string | undefined {
    return this.ids.get(messageId);
  }
}
