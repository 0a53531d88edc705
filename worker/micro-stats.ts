// A `mig worker`'s own NATS micro service: answers `$SRV.PING|INFO|STATS` with one endpoint per unary capability it
// serves, and the request counts, errors and processing times of the calls it ran (docs/bindings/provider-protocol.md §8).
import {
  type EndpointInfo,
  type NamedEndpointStats,
  type ServiceIdentity,
  type ServiceInfo,
  ServiceResponseType,
  type ServiceStats,
  ServiceVerb,
} from "@nats-io/services";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { MIG_VERSION } from "../runtime/protocol/header.ts";
import { SUBJECT_ROOT } from "../runtime/protocol/subjects.ts";
import type { CapabilityDefinition } from "../runtime/provider/provider.ts";
import type { MigRuntime } from "../runtime/runtime.ts";

/** The micro service name every worker shares; its id is the worker's provider id. */
export const WORKER_SERVICE_NAME = "mig-worker";

/**
 * Metadata keys of the worker's service and endpoints. Deliberately not `mig.capability`: every runtime attaches an
 * endpoint carrying that key as a provider (runtime/fleet/micro-attach.ts), which would list the worker's
 * capabilities a second time, served through a subject without MIG's checks.
 */
export const WORKER_MICRO_KEYS = {
  provider: "mig.worker.provider_id",
  capability: "mig.worker.capability",
  version: "mig.worker.version",
} as const;

/** How a call ended when it ended badly: the MIG error it was answered with (a failed handler's is MIG_INTERNAL). */
export interface CallFailure {
  code: string;
  message: string;
}

/** Where the worker's paths report each call they answered: the work subjects and queue, and the direct lane. */
export interface CallRecorder {
  /** `since` is `performance.now()` when the worker took the call. */
  record(capability: string, since: number, failure?: CallFailure): void;
}

/** One endpoint's figures, for the version of the capability they were counted on. */
interface Figures {
  version: string;
  requests: number;
  errors: number;
  nanos: number;
  lastError: string;
}

const SERVICE_VERSION = `${MIG_VERSION}.0`;
const DESCRIPTION =
  "a MIG worker: the calls it ran, per capability; invoke a capability through MIG on the endpoint's subject";

/**
 * The `$SRV` answers are written here rather than by `@nats-io/services`' Service: that library counts a call when
 * its endpoint subscription receives one and times only the synchronous callback, while the worker's calls arrive on
 * MIG's own subjects and finish asynchronously; its figures can be neither fed nor replaced (a stats handler only
 * fills `data`). Answering the three verbs ourselves also leaves the endpoints without any subscription: their
 * subject is the capability's public invoke subject, answered by the gateways and direct lanes with every MIG check.
 */
export class WorkerMicroStats implements CallRecorder {
  private readonly figures = new Map<string, Figures>();
  private readonly started = new Date().toISOString();
  private readonly metadata: Record<string, string>;
  private subscriptions: Subscription[] = [];

  private constructor(
    private readonly providerId: string,
    private readonly served: ReadonlyMap<string, { definition: CapabilityDefinition }>,
  ) {
    this.metadata = { [WORKER_MICRO_KEYS.provider]: providerId };
  }

  /**
   * Answers `$SRV.<verb>`, `$SRV.<verb>.mig-worker` and `$SRV.<verb>.mig-worker.<provider id>` for the capabilities in
   * `served` (the worker's live map: capabilities it takes up or leaves show at the next request). Counts calls even
   * when the bus refuses this process those subscriptions (a provider user): it then says so once and answers nothing.
   */
  static async start(
    runtime: MigRuntime,
    providerId: string,
    served: ReadonlyMap<string, { definition: CapabilityDefinition }>,
  ): Promise<WorkerMicroStats> {
    const stats = new WorkerMicroStats(providerId, served);
    const { nc } = runtime.bus;
    const subjects = ["$SRV.*", `$SRV.*.${WORKER_SERVICE_NAME}`, `$SRV.*.${WORKER_SERVICE_NAME}.${providerId}`];
    // No queue group: every service answers discovery requests.
    stats.subscriptions = subjects.map((subject) =>
      nc.subscribe(subject, { callback: (err, msg) => (err ? undefined : stats.answer(msg)) }),
    );
    await nc.flush();
    // A subscription the bus's permissions refuse is closed by the server's -ERR, which arrives before the PONG.
    const refused = stats.subscriptions.find((sub) => sub.isClosed());
    if (refused) {
      await stats.stop();
      runtime.logger.warn(
        { subject: refused.getSubject() },
        "no NATS micro stats: the bus refuses this worker's NATS user a subscription to $SRV (allow it to subscribe to $SRV.> for `nats micro` to list the worker)",
      );
    } else {
      runtime.logger.info(
        { service: WORKER_SERVICE_NAME, id: providerId },
        "NATS micro stats answering $SRV.PING|INFO|STATS",
      );
    }
    return stats;
  }

  record(capability: string, since: number, failure?: CallFailure): void {
    const version = this.served.get(capability)?.definition.descriptor.version;
    if (version === undefined) return; // not (or no longer) served here: no endpoint to count it on
    let figures = this.figures.get(capability);
    // A capability served again in another version is another endpoint: its figures start afresh.
    if (!figures || figures.version !== version) {
      figures = { version, requests: 0, errors: 0, nanos: 0, lastError: "" };
      this.figures.set(capability, figures);
    }
    figures.requests++;
    figures.nanos += Math.round((performance.now() - since) * 1e6);
    if (failure) {
      figures.errors++;
      figures.lastError = `${failure.code}: ${failure.message}`;
    }
  }

  /** Stops answering (the worker is stopping). */
  async stop(): Promise<void> {
    const subscriptions = this.subscriptions;
    this.subscriptions = [];
    await Promise.all(subscriptions.map((sub) => sub.drain().catch(() => undefined)));
  }

  private answer(msg: Msg): void {
    const verb = msg.subject.split(".", 2)[1];
    const answer =
      verb === ServiceVerb.PING
        ? this.ping()
        : verb === ServiceVerb.INFO
          ? this.info()
          : verb === ServiceVerb.STATS
            ? this.stats()
            : undefined;
    if (answer) msg.respond(JSON.stringify(answer));
  }

  private identity(type: ServiceResponseType): ServiceIdentity {
    return { type, name: WORKER_SERVICE_NAME, id: this.providerId, version: SERVICE_VERSION, metadata: this.metadata };
  }

  private ping(): ServiceIdentity {
    return this.identity(ServiceResponseType.PING);
  }

  private info(): ServiceInfo {
    const endpoints: EndpointInfo[] = this.endpoints().map(({ name, subject, definition }) => ({
      name,
      subject,
      metadata: {
        [WORKER_MICRO_KEYS.capability]: definition.descriptor.id,
        [WORKER_MICRO_KEYS.version]: definition.descriptor.version,
      },
    }));
    return { ...this.identity(ServiceResponseType.INFO), description: DESCRIPTION, endpoints };
  }

  private stats(): ServiceStats {
    // Figures of capabilities no longer served go with them: the map holds at most what the worker serves.
    for (const id of this.figures.keys()) if (!this.served.has(id)) this.figures.delete(id);
    const endpoints: NamedEndpointStats[] = this.endpoints().map(({ name, subject, definition }) => {
      const { id, version } = definition.descriptor;
      const figures = this.figures.get(id);
      const counted = figures?.version === version ? figures : undefined;
      const requests = counted?.requests ?? 0;
      const nanos = counted?.nanos ?? 0;
      return {
        name,
        subject,
        num_requests: requests,
        num_errors: counted?.errors ?? 0,
        last_error: counted?.lastError ?? "",
        processing_time: nanos,
        average_processing_time: requests > 0 ? Math.round(nanos / requests) : 0,
      };
    });
    return { ...this.identity(ServiceResponseType.STATS), started: this.started, endpoints };
  }

  /** The unary capabilities served now (streams are not counted), each with its endpoint name and subject. */
  private endpoints(): { name: string; subject: string; definition: CapabilityDefinition }[] {
    return [...this.served.values()]
      .filter(({ definition }) => definition.descriptor.modes.includes("unary"))
      .map(({ definition }) => ({
        // Micro endpoint names are [A-Za-z0-9_-]: the capability id with its dots as underscores (the exact id is
        // in the metadata).
        name: definition.descriptor.id.replaceAll(".", "_"),
        subject: `${SUBJECT_ROOT}.*.invoke.${definition.descriptor.id}`,
        definition,
      }));
  }
}
