// NATS micro services as MIG providers: finds endpoints whose metadata names a MIG capability ($SRV.INFO) and serves them unary.
import { Empty, type Msg, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { Logger } from "../base/logger.ts";
import type { UnaryHandler } from "../provider/provider.ts";
import type { ProviderEntry } from "./provider-entry.ts";

/** Endpoint metadata keys that make a micro service endpoint a MIG capability (documented in docs/bindings/provider-protocol.md). */
export const MICRO_KEYS = {
  capability: "mig.capability",
  version: "mig.version",
  inputSchema: "mig.input_schema_uri",
  outputSchema: "mig.output_schema_uri",
  scopes: "mig.auth_scopes",
} as const;

export const MICRO_DISCOVERY_INTERVAL_MS = 2_000;
/** A service missing from this many discovery rounds in a row is gone. */
const MISSED_ROUNDS = 3;

interface EndpointInfo {
  name?: unknown;
  subject?: unknown;
  metadata?: Record<string, unknown> | null;
}

interface ServiceInfo {
  name?: unknown;
  id?: unknown;
  version?: unknown;
  endpoints?: EndpointInfo[] | null;
}

/** Error codes of the micro protocol (Nats-Service-Error-Code, HTTP-like) as MIG codes. */
function migCodeOf(code: number): MigError["code"] {
  if (code === 400 || code === 422) return "MIG_INVALID_REQUEST";
  if (code === 401) return "MIG_UNAUTHORIZED";
  if (code === 403) return "MIG_FORBIDDEN";
  if (code === 404) return "MIG_NOT_FOUND";
  if (code === 408 || code === 504) return "MIG_TIMEOUT";
  if (code === 429) return "MIG_RATE_LIMITED";
  if (code === 503) return "MIG_UNAVAILABLE";
  return "MIG_INTERNAL";
}

const decoder = new TextDecoder();

/** The handler of a micro endpoint: the MIG payload as the JSON request, the JSON reply as the result payload. */
export function microHandler(nc: NatsConnection, subject: string, capability: string): UnaryHandler {
  return async (payload, { header }) => {
    const h = natsHeaders();
    h.set("mig_version", header.mig_version);
    h.set("message_id", header.message_id);
    h.set("tenant_id", header.tenant_id);
    if (header.traceparent) h.set("traceparent", header.traceparent);
    let msg: Msg;
    try {
      // The invocation actor enforces the deadline; the request's own timeout only frees the inbox a little later.
      msg = await nc.request(subject, JSON.stringify(payload), { timeout: header.deadline_ms + 1_000, headers: h });
    } catch (err) {
      const name = (err as Error)?.name ?? "";
      if (/NoResponders/i.test(name) || /no responders/i.test((err as Error)?.message ?? "")) {
        throw new MigError(
          "MIG_UNAVAILABLE",
          `the micro service endpoint of ${capability} has no live instance; retry shortly`,
        );
      }
      throw new MigError("MIG_TIMEOUT", `the micro service endpoint of ${capability} did not answer in time`);
    }
    const errorCode = msg.headers?.get("Nats-Service-Error-Code");
    if (errorCode) {
      const text = msg.headers?.get("Nats-Service-Error") || "the service reported an error";
      throw new MigError(migCodeOf(Number(errorCode)), `${capability}: ${text.slice(0, 500)}`, {
        details: { service_error_code: Number(errorCode) },
      });
    }
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(msg.data));
    } catch {
      throw new MigError(
        "MIG_INTERNAL",
        `the micro service endpoint of ${capability} answered something that is not JSON`,
      );
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new MigError(
        "MIG_INTERNAL",
        `the micro service endpoint of ${capability} answered JSON that is not an object`,
      );
    }
    return value as JsonObject;
  };
}

/** Turns one service's INFO into a provider entry, or undefined when no endpoint names a MIG capability. */
export function providerFromInfo(
  nc: NatsConnection,
  info: ServiceInfo,
  now: number,
  intervalMs: number,
): ProviderEntry | undefined {
  if (typeof info.id !== "string" || typeof info.name !== "string" || !Array.isArray(info.endpoints)) return undefined;
  const capabilities: ProviderEntry["capabilities"] = [];
  for (const endpoint of info.endpoints) {
    const meta = endpoint.metadata ?? {};
    const id = meta[MICRO_KEYS.capability];
    if (typeof id !== "string" || typeof endpoint.subject !== "string" || typeof endpoint.name !== "string") continue;
    const text = (key: string, fallback: string) =>
      typeof meta[key] === "string" && meta[key] ? (meta[key] as string) : fallback;
    const base = `schema://nats-micro/${info.name}/${endpoint.name}`;
    const descriptor: CapabilityDescriptor = {
      id,
      version: text(MICRO_KEYS.version, typeof info.version === "string" ? info.version : "0.0.0"),
      modes: ["unary"],
      input_schema_uri: text(MICRO_KEYS.inputSchema, `${base}/input`),
      output_schema_uri: text(MICRO_KEYS.outputSchema, `${base}/output`),
      auth_scopes: text(MICRO_KEYS.scopes, "")
        .split(/[\s,]+/)
        .filter(Boolean),
      qos: { delivery_semantics: "best_effort", supports_replay: false, supports_ordering: false },
    };
    capabilities.push({ descriptor, handler: microHandler(nc, endpoint.subject, id) });
  }
  if (capabilities.length === 0) return undefined;
  return {
    provider_id: `micro-${info.id}`,
    kind: "micro",
    capabilities,
    lastSeen: now,
    ttlMs: intervalMs * MISSED_ROUNDS,
    fingerprint: JSON.stringify(capabilities.map((c) => c.descriptor)),
  };
}

/** Polls `$SRV.INFO` and feeds the fleet; the micro protocol has no push, so liveness is "answered recently". */
export class MicroAttach {
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly fleet: { upsert(entry: ProviderEntry): void },
    private readonly logger: Logger,
    private readonly intervalMs = MICRO_DISCOVERY_INTERVAL_MS,
  ) {}

  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
  }

  async poll(): Promise<void> {
    if (this.polling || this.nc.isClosed() || this.nc.isDraining()) return;
    this.polling = true;
    try {
      const replies = await this.nc.requestMany("$SRV.INFO", Empty, {
        strategy: "stall",
        stall: 250,
        maxWait: Math.min(1_000, this.intervalMs),
      });
      for await (const msg of replies) {
        if (msg.data.length === 0) continue;
        let info: ServiceInfo;
        try {
          info = JSON.parse(decoder.decode(msg.data)) as ServiceInfo;
        } catch {
          continue;
        }
        const entry = providerFromInfo(this.nc, info, Date.now(), this.intervalMs);
        if (entry) this.fleet.upsert(entry);
      }
    } catch (err) {
      if (!/no responders|timeout/i.test((err as Error)?.message ?? "")) {
        this.logger.debug({ err: (err as Error)?.message }, "micro service discovery round failed");
      }
    } finally {
      this.polling = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
