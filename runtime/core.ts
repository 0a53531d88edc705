// What every operation needs from the runtime: its settings, registries, supervisor and bookkeeping.

import type { CancelStatus } from "../schemas/types.ts";
import type { RuntimeConfig } from "./base/config.ts";
import type { LoadGauge } from "./base/load.ts";
import type { Logger } from "./base/logger.ts";
import type { Metrics } from "./base/metrics.ts";
import type { InflightTables } from "./flow/inflight.ts";
import type { Supervisor } from "./flow/supervisor.ts";
import type { FairShare } from "./policy/fair-share.ts";
import type { AccessPolicy } from "./policy/policy.ts";
import type { RequestContext } from "./protocol/request-context.ts";
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
  /** The invocations and streams in flight in this process, and the ids that finished lately. */
  work: InflightTables;
  /** Tenants' turns while the event loop is saturated (runtime/policy/fair-share.ts). */
  fairShare: FairShare;
  /** Other runtime processes on the same bus, when this runtime watches the fleet. */
  fleet?: FleetView | undefined;
}
