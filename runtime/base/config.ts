// Runtime configuration: one table of settings, each readable from an environment variable or a CLI flag.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MAX_JSON_DEPTH } from "../protocol/json-limits.ts";

export type AuthMode = "none" | "jwt";

export interface RuntimeConfig {
  httpAddr: string;
  grpcAddr: string;
  natsUrl: string | undefined;
  natsPort: number;
  natsMonitorPort: number;
  natsStartTimeoutMs: number;
  dataDir: string;
  authMode: AuthMode;
  jwtHs256Secret: string | undefined;
  logLevel: string;
  serverId: string | undefined;
  maxBodyBytes: number;
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  httpMaxRequestsPerSocket: number;
  httpMaxConnections: number;
  httpDrainBytes: number;
  wsMaxStreams: number;
  maxJsonDepth: number;
  streamWindow: number;
  streamStallMs: number;
  idempotencyWindowMs: number;
  maxDeadlineMs: number;
  capacity: number;
  tenantMaxInflight: number | undefined;
  tenantFairInflight: number;
  jsReplicas: number;
  drainTimeoutMs: number;
  fairBusyUtilisation: number;
  fairWaitMs: number;
  heartbeatMs: number;
  workerConcurrency: number;
  workerDirect: boolean;
  jwtPublicKeyFile: string | undefined;
  jwtJwksFile: string | undefined;
  jwtJwksUrl: string | undefined;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  jwtClockSkewS: number;
  jwtRequireExp: boolean;
  adminScope: string;
  adminGlobalScope: string;
  metricsPublic: boolean;
  metricsAddr: string | undefined;
  httpTlsCert: string | undefined;
  httpTlsKey: string | undefined;
  policyFile: string | undefined;
  tenantRateLimit: RateLimit | undefined;
  capabilityRateLimit: RateLimit | undefined;
  cancelSameSubject: boolean;
  auditFile: string | undefined;
  mcpManifest: string | undefined;
  mcpResourceUrl: string | undefined;
  mcpAuthorizationServers: string | undefined;
  auditMaxAgeMs: number;
  auditMaxBytes: number;
  natsConf: string | undefined;
  natsUser: string | undefined;
  natsPassword: string | undefined;
  natsCredsFile: string | undefined;
  natsTlsCa: string | undefined;
  natsTlsCert: string | undefined;
  natsTlsKey: string | undefined;
  natsCredentials: string | undefined;
  allowOpenBus: boolean;
  eventMaxPayloadBytes: number;
  eventMaxAgeMs: number;
  maxInflightLimit: number;
  replayRatePerSec: number;
  replayMaxEvents: number;
  deadLetterAfter: number;
  tenantMaxTopics: number;
  maxTopics: number;
  topicMaxBytes: number;
  topicMaxMsgs: number;
  topicDiscard: TopicDiscard;
  tenantPublishRateLimit: RateLimit | undefined;
  idempotencyMaxRecordBytes: number;
  idempotencyTenantMaxBytes: number;
  idempotencyMaxBytes: number;
}

/** What a full topic does: `old` drops its oldest events, `new` refuses new ones (docs/events.md). */
export type TopicDiscard = "old" | "new";

/** A token bucket: `rate` tokens per second refill a bucket of `burst` tokens. */
export interface RateLimit {
  rate: number;
  burst: number;
}

interface Setting<K extends keyof RuntimeConfig> {
  key: K;
  env: string;
  flag: string;
  description: string;
  defaultValue: RuntimeConfig[K];
  parse: (raw: string) => RuntimeConfig[K];
}

/** A parser of an integer setting between `min` and `max`, whose error names the setting. */
export function integer(name: string, min: number, max: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
    }
    return value;
  };
}

const text = (raw: string) => raw;

function fraction(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 1) {
      throw new Error(`${name} must be a number from 0 to 1, got "${raw}"`);
    }
    return value;
  };
}

function boolean(name: string) {
  return (raw: string): boolean => {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Error(`${name} must be true or false, got "${raw}"`);
  };
}

/** "rate/burst" (per second), e.g. "50/100"; "rate" alone means a burst of the same size. */
export function parseRateLimit(name: string) {
  return (raw: string): RateLimit => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\d+)\s*)?$/.exec(raw);
    const rate = match ? Number(match[1]) : NaN;
    const burst = match?.[2] !== undefined ? Number(match[2]) : Math.max(1, Math.ceil(rate));
    if (!match || !(rate > 0) || !(burst >= 1)) {
      throw new Error(`${name} must be "rate/burst" in requests per second, e.g. "50/100", got "${raw}"`);
    }
    return { rate, burst };
  };
}

export const SETTINGS = [
  {
    key: "httpAddr",
    env: "MIG_HTTP_ADDR",
    flag: "--http-addr <host:port>",
    description: "HTTP listener (JSON, SSE, WebSocket, /metrics, /admin)",
    defaultValue: "127.0.0.1:8080",
    parse: text,
  },
  {
    key: "grpcAddr",
    env: "MIG_GRPC_ADDR",
    flag: "--grpc-addr <host:port>",
    description: "gRPC listener",
    defaultValue: "127.0.0.1:9090",
    parse: text,
  },
  {
    key: "natsUrl",
    env: "MIG_NATS_URL",
    flag: "--nats-url <url>",
    description: "NATS server or cluster to join; unset starts an embedded nats-server",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsPort",
    env: "MIG_NATS_PORT",
    flag: "--nats-port <port>",
    description: "client port of the embedded nats-server (0 picks a free one)",
    defaultValue: 4222,
    parse: integer("MIG_NATS_PORT", 0, 65535),
  },
  {
    key: "natsMonitorPort",
    env: "MIG_NATS_MONITOR_PORT",
    flag: "--nats-monitor-port <port>",
    description: "monitoring port of the embedded nats-server (0 picks a free one)",
    defaultValue: 8222,
    parse: integer("MIG_NATS_MONITOR_PORT", 0, 65535),
  },
  {
    key: "natsStartTimeoutMs",
    env: "MIG_NATS_START_TIMEOUT_MS",
    flag: "--nats-start-timeout-ms <ms>",
    description:
      "how long the embedded nats-server may take to start (it recovers its JetStream store first: grows with the number of streams)",
    defaultValue: 120_000,
    parse: integer("MIG_NATS_START_TIMEOUT_MS", 1, 24 * 3600 * 1000),
  },
  {
    key: "dataDir",
    env: "MIG_DATA_DIR",
    flag: "--data-dir <dir>",
    description: "where the embedded nats-server keeps JetStream data",
    defaultValue: "./data",
    parse: text,
  },
  {
    key: "authMode",
    env: "MIG_AUTH_MODE",
    flag: "--auth-mode <mode>",
    description: "`none` (anonymous callers, tenant from the request) or `jwt`",
    defaultValue: "none",
    parse: authMode,
  },
  {
    key: "jwtHs256Secret",
    env: "MIG_JWT_HS256_SECRET",
    flag: "--jwt-hs256-secret <secret>",
    description: "shared secret for HS256 tokens in jwt mode",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "logLevel",
    env: "MIG_LOG_LEVEL",
    flag: "--log-level <level>",
    description: "pino level: fatal, error, warn, info, debug, trace",
    defaultValue: "info",
    parse: text,
  },
  {
    key: "serverId",
    env: "MIG_SERVER_ID",
    flag: "--server-id <id>",
    description: "server_id reported by HELLO (default: host name and process id)",
    defaultValue: undefined,
    parse: text,
  },
  // Events (docs/events.md).
  {
    key: "eventMaxPayloadBytes",
    env: "MIG_EVENT_MAX_PAYLOAD_BYTES",
    flag: "--event-max-payload-bytes <n>",
    description: "largest event payload PUBLISH accepts (JSON bytes)",
    defaultValue: 1024 * 1024,
    parse: integer("MIG_EVENT_MAX_PAYLOAD_BYTES", 1, 6 * 1024 * 1024),
  },
  {
    key: "eventMaxAgeMs",
    env: "MIG_EVENT_MAX_AGE_MS",
    flag: "--event-max-age-ms <ms>",
    description: "how long a topic's events are kept in JetStream",
    defaultValue: 7 * 24 * 3600 * 1000,
    parse: integer("MIG_EVENT_MAX_AGE_MS", 1000, 3650 * 24 * 3600 * 1000),
  },
  {
    key: "maxInflightLimit",
    env: "MIG_MAX_INFLIGHT_LIMIT",
    flag: "--max-inflight-limit <n>",
    description: "largest max_inflight a subscriber may ask for",
    defaultValue: 10_000,
    parse: integer("MIG_MAX_INFLIGHT_LIMIT", 1, 1_000_000),
  },
  {
    key: "replayRatePerSec",
    env: "MIG_REPLAY_RATE_PER_SEC",
    flag: "--replay-rate-per-sec <n>",
    description: "replayed events per second per subscription (0: unthrottled)",
    defaultValue: 50_000,
    parse: integer("MIG_REPLAY_RATE_PER_SEC", 0, 100_000_000),
  },
  {
    key: "replayMaxEvents",
    env: "MIG_REPLAY_MAX_EVENTS",
    flag: "--replay-max-events <n>",
    description: "how far behind the end of a topic one subscription may start (events)",
    defaultValue: 100_000,
    parse: integer("MIG_REPLAY_MAX_EVENTS", 0, 1_000_000_000),
  },
  {
    key: "deadLetterAfter",
    env: "MIG_DEAD_LETTER_AFTER",
    flag: "--dead-letter-after <n>",
    description: "deliveries of one event before it goes to the dead-letter subject",
    defaultValue: 5,
    parse: integer("MIG_DEAD_LETTER_AFTER", 1, 1000),
  },
  // Quotas (docs/security.md): what one tenant may take of the bus, so that it cannot exhaust JetStream for the others.
  {
    key: "tenantMaxTopics",
    env: "MIG_TENANT_MAX_TOPICS",
    flag: "--tenant-max-topics <n>",
    description:
      "topics (JetStream streams) one tenant may have; a PUBLISH or SUBSCRIBE that would create one more is refused",
    defaultValue: 100,
    parse: integer("MIG_TENANT_MAX_TOPICS", 1, 1_000_000),
  },
  {
    key: "maxTopics",
    env: "MIG_MAX_TOPICS",
    flag: "--max-topics <n>",
    description: "topics of all tenants together (each costs nats-server about 2 file descriptors and start-up time)",
    defaultValue: 1000,
    parse: integer("MIG_MAX_TOPICS", 1, 1_000_000),
  },
  {
    key: "topicMaxBytes",
    env: "MIG_TOPIC_MAX_BYTES",
    flag: "--topic-max-bytes <n>",
    description: "stored bytes per topic (JetStream reserves them from its max_file_store)",
    defaultValue: 4 * 1024 * 1024,
    parse: integer("MIG_TOPIC_MAX_BYTES", 1024, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "topicMaxMsgs",
    env: "MIG_TOPIC_MAX_MSGS",
    flag: "--topic-max-msgs <n>",
    description: "stored events per topic",
    defaultValue: 1_000_000,
    parse: integer("MIG_TOPIC_MAX_MSGS", 1, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "topicDiscard",
    env: "MIG_TOPIC_DISCARD",
    flag: "--topic-discard <old|new>",
    description: "a full topic drops its oldest events (`old`) or refuses new ones with MIG_BACKPRESSURE (`new`)",
    defaultValue: "old",
    parse: topicDiscard,
  },
  {
    key: "tenantPublishRateLimit",
    env: "MIG_TENANT_PUBLISH_RATE_LIMIT",
    flag: "--tenant-publish-rate-limit <rate/burst|off>",
    description: "PUBLISH rate limit per tenant, per process",
    defaultValue: { rate: 1000, burst: 2000 },
    parse: optionalRateLimit("MIG_TENANT_PUBLISH_RATE_LIMIT"),
  },
  {
    key: "idempotencyMaxRecordBytes",
    env: "MIG_IDEMPOTENCY_MAX_RECORD_BYTES",
    flag: "--idempotency-max-record-bytes <n>",
    description: "largest result kept for an idempotency key; a larger one is answered but not kept",
    defaultValue: 64 * 1024,
    parse: integer("MIG_IDEMPOTENCY_MAX_RECORD_BYTES", 256, 64 * 1024 * 1024),
  },
  {
    key: "idempotencyTenantMaxBytes",
    env: "MIG_IDEMPOTENCY_TENANT_MAX_BYTES",
    flag: "--idempotency-tenant-max-bytes <n>",
    description:
      "bytes of results one tenant may keep within the idempotency window, per process; beyond it results are not kept",
    defaultValue: 64 * 1024 * 1024,
    parse: integer("MIG_IDEMPOTENCY_TENANT_MAX_BYTES", 0, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "idempotencyMaxBytes",
    env: "MIG_IDEMPOTENCY_MAX_BYTES",
    flag: "--idempotency-max-bytes <n>",
    description: "size cap of the idempotency KV bucket (all tenants); when full, results are not kept",
    defaultValue: 1024 * 1024 * 1024,
    parse: integer("MIG_IDEMPOTENCY_MAX_BYTES", 64 * 1024, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "maxBodyBytes",
    env: "MIG_MAX_BODY_BYTES",
    flag: "--max-body-bytes <n>",
    description: "largest request body any binding accepts",
    defaultValue: 2 * 1024 * 1024,
    parse: integer("MIG_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024),
  },
  // The HTTP listener's own limits (docs/security.md): slow or idle clients cannot hold sockets without bound.
  {
    key: "httpHeadersTimeoutMs",
    env: "MIG_HTTP_HEADERS_TIMEOUT_MS",
    flag: "--http-headers-timeout-ms <ms>",
    description: "time a client has to send a request's headers; then it gets 408 and the connection closes",
    defaultValue: 10_000,
    parse: integer("MIG_HTTP_HEADERS_TIMEOUT_MS", 100, 3600 * 1000),
  },
  {
    key: "httpRequestTimeoutMs",
    env: "MIG_HTTP_REQUEST_TIMEOUT_MS",
    flag: "--http-request-timeout-ms <ms>",
    description:
      "time a client has to send a whole request (headers and body); it does not limit the answer, so streams and subscriptions run on",
    defaultValue: 30_000,
    parse: integer("MIG_HTTP_REQUEST_TIMEOUT_MS", 100, 3600 * 1000),
  },
  {
    key: "httpKeepAliveTimeoutMs",
    env: "MIG_HTTP_KEEPALIVE_TIMEOUT_MS",
    flag: "--http-keepalive-timeout-ms <ms>",
    description: "how long an idle keep-alive connection stays open (longer than a load balancer's idle timeout)",
    defaultValue: 65_000,
    parse: integer("MIG_HTTP_KEEPALIVE_TIMEOUT_MS", 100, 3600 * 1000),
  },
  {
    key: "httpMaxRequestsPerSocket",
    env: "MIG_HTTP_MAX_REQUESTS_PER_SOCKET",
    flag: "--http-max-requests-per-socket <n>",
    description: "requests one keep-alive connection serves before the server closes it (0: no cap)",
    defaultValue: 1000,
    parse: integer("MIG_HTTP_MAX_REQUESTS_PER_SOCKET", 0, 1_000_000_000),
  },
  {
    key: "httpMaxConnections",
    env: "MIG_HTTP_MAX_CONNECTIONS",
    flag: "--http-max-connections <n>",
    description:
      "open connections of the HTTP listener (WebSockets included); beyond it a request gets 503 MIG_BACKPRESSURE with Retry-After; keep it below the open-file limit",
    defaultValue: 10_000,
    parse: integer("MIG_HTTP_MAX_CONNECTIONS", 1, 1_000_000),
  },
  {
    key: "httpDrainBytes",
    env: "MIG_HTTP_DRAIN_BYTES",
    flag: "--http-drain-bytes <n>",
    description:
      "how much of a refused request's body (413, 415, 401, ...) the server reads and discards so that the client gets the answer; past it the connection is closed",
    defaultValue: 8 * 1024 * 1024,
    parse: integer("MIG_HTTP_DRAIN_BYTES", 0, 1024 * 1024 * 1024),
  },
  {
    key: "wsMaxStreams",
    env: "MIG_WS_MAX_STREAMS",
    flag: "--ws-max-streams <n>",
    description: "open streams on one WebSocket; one more is refused with a MIG_BACKPRESSURE error frame",
    defaultValue: 256,
    parse: integer("MIG_WS_MAX_STREAMS", 1, 100_000),
  },
  {
    key: "maxJsonDepth",
    env: "MIG_MAX_JSON_DEPTH",
    flag: "--max-json-depth <n>",
    description:
      "deepest nesting of objects and arrays a request body may have (every binding); deeper is MIG_INVALID_REQUEST",
    defaultValue: DEFAULT_MAX_JSON_DEPTH,
    parse: integer("MIG_MAX_JSON_DEPTH", 1, 1000),
  },
  {
    key: "streamWindow",
    env: "MIG_STREAM_WINDOW",
    flag: "--stream-window <frames>",
    description: "frames a stream may have on its way to the consumer before its provider waits for credit",
    defaultValue: 32,
    parse: integer("MIG_STREAM_WINDOW", 1, 4096),
  },
  {
    key: "streamStallMs",
    env: "MIG_STREAM_STALL_MS",
    flag: "--stream-stall-ms <ms>",
    description: "how long a consumer may read nothing before its stream ends with MIG_BACKPRESSURE",
    defaultValue: 30_000,
    parse: integer("MIG_STREAM_STALL_MS", 1, 3600 * 1000),
  },
  {
    key: "idempotencyWindowMs",
    env: "MIG_IDEMPOTENCY_WINDOW_MS",
    flag: "--idempotency-window-ms <ms>",
    description: "how long an idempotency key's first result is kept (KV bucket TTL)",
    defaultValue: 10 * 60 * 1000,
    parse: integer("MIG_IDEMPOTENCY_WINDOW_MS", 1000, 7 * 24 * 3600 * 1000),
  },
  {
    key: "maxDeadlineMs",
    env: "MIG_MAX_DEADLINE_MS",
    flag: "--max-deadline-ms <ms>",
    description: "upper bound on a caller's deadline_ms",
    defaultValue: 10 * 60 * 1000,
    parse: integer("MIG_MAX_DEADLINE_MS", 1, 24 * 3600 * 1000),
  },
  {
    key: "capacity",
    env: "MIG_CAPACITY",
    flag: "--capacity <n>",
    description:
      "in-flight invocations this process accepts; beyond it INVOKE answers MIG_BACKPRESSURE and HEARTBEAT reports a load factor of 1",
    defaultValue: 1024,
    parse: integer("MIG_CAPACITY", 1, 1_000_000),
  },
  {
    key: "tenantMaxInflight",
    env: "MIG_TENANT_MAX_INFLIGHT",
    flag: "--tenant-max-inflight <n>",
    description:
      "in-flight invocations one tenant may hold in this process (its share of MIG_CAPACITY; default half of it); beyond it INVOKE answers MIG_BACKPRESSURE to that tenant only",
    defaultValue: undefined,
    parse: integer("MIG_TENANT_MAX_INFLIGHT", 1, 1_000_000),
  },
  {
    key: "drainTimeoutMs",
    env: "MIG_DRAIN_TIMEOUT_MS",
    flag: "--drain-timeout-ms <ms>",
    description:
      "on SIGTERM, how long a gateway takes no new work but finishes what is in flight before it cancels the rest and exits",
    defaultValue: 10_000,
    parse: integer("MIG_DRAIN_TIMEOUT_MS", 0, 600_000),
  },
  {
    key: "jsReplicas",
    env: "MIG_JS_REPLICAS",
    flag: "--js-replicas <n>",
    description:
      "copies JetStream keeps of every stream and bucket the runtime creates (topics, dead letters, audit, idempotency, registry, work queue): 1 on a single server such as the embedded one, 3 on a cluster",
    defaultValue: 1,
    parse: integer("MIG_JS_REPLICAS", 1, 5),
  },
  {
    key: "tenantFairInflight",
    env: "MIG_TENANT_FAIR_INFLIGHT",
    flag: "--tenant-fair-inflight <n>",
    description:
      "INVOKEs and PUBLISHes one tenant runs at once while the event loop is saturated and other tenants are active; its further ones wait their turn (0: no turns)",
    defaultValue: 2,
    parse: integer("MIG_TENANT_FAIR_INFLIGHT", 0, 1_000_000),
  },
  {
    key: "fairBusyUtilisation",
    env: "MIG_FAIR_BUSY_UTILISATION",
    flag: "--fair-busy-utilisation <0-1>",
    description:
      "event-loop utilisation (over 100 ms) from which tenants take fair turns (MIG_TENANT_FAIR_INFLIGHT); 0 always, 1 only when fully busy",
    defaultValue: 0.9,
    parse: fraction("MIG_FAIR_BUSY_UTILISATION"),
  },
  {
    key: "fairWaitMs",
    env: "MIG_FAIR_WAIT_MS",
    flag: "--fair-wait-ms <ms>",
    description: "how long an operation waits for its tenant's fair turn before it is answered MIG_BACKPRESSURE",
    defaultValue: 1_000,
    parse: integer("MIG_FAIR_WAIT_MS", 1, 600_000),
  },
  {
    key: "jwtPublicKeyFile",
    env: "MIG_JWT_PUBLIC_KEY_FILE",
    flag: "--jwt-public-key-file <path>",
    description: "PEM public key (SPKI) for RS256, ES256/384/512 or EdDSA tokens; the algorithm follows the key type",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "jwtJwksFile",
    env: "MIG_JWT_JWKS_FILE",
    flag: "--jwt-jwks-file <path>",
    description: "JWKS file (JSON) of public keys, chosen by the token's kid and alg",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "jwtJwksUrl",
    env: "MIG_JWT_JWKS_URL",
    flag: "--jwt-jwks-url <url>",
    description: "JWKS URL of an identity provider (fetched and cached; refetched on an unknown kid)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "jwtIssuer",
    env: "MIG_JWT_ISSUER",
    flag: "--jwt-issuer <iss>",
    description: "required `iss` claim (comma-separated list accepted)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "jwtAudience",
    env: "MIG_JWT_AUDIENCE",
    flag: "--jwt-audience <aud>",
    description: "required `aud` claim (comma-separated list: any one matches)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "jwtClockSkewS",
    env: "MIG_JWT_CLOCK_SKEW_S",
    flag: "--jwt-clock-skew-s <s>",
    description: "clock skew allowed when checking `exp` and `nbf`",
    defaultValue: 30,
    parse: integer("MIG_JWT_CLOCK_SKEW_S", 0, 600),
  },
  {
    key: "jwtRequireExp",
    env: "MIG_JWT_REQUIRE_EXP",
    flag: "--jwt-require-exp <bool>",
    description: "refuse tokens without an `exp` claim",
    defaultValue: false,
    parse: boolean("MIG_JWT_REQUIRE_EXP"),
  },
  {
    key: "adminScope",
    env: "MIG_ADMIN_SCOPE",
    flag: "--admin-scope <scope>",
    description:
      "scope a token needs for its own tenant's /admin/v0.1/* routes in jwt mode (MIG_ADMIN_GLOBAL_SCOPE for every tenant)",
    defaultValue: "mig:admin",
    parse: text,
  },
  {
    key: "adminGlobalScope",
    env: "MIG_ADMIN_GLOBAL_SCOPE",
    flag: "--admin-global-scope <scope>",
    description:
      "scope a token needs to read every tenant's admin data (audit, live actors, /metrics) in jwt mode; the admin scope alone shows the token's own tenant",
    defaultValue: "mig:admin:global",
    parse: text,
  },
  {
    key: "metricsPublic",
    env: "MIG_METRICS_PUBLIC",
    flag: "--metrics-public <bool>",
    description: "serve /metrics without a token in jwt mode",
    defaultValue: false,
    parse: boolean("MIG_METRICS_PUBLIC"),
  },
  {
    key: "metricsAddr",
    env: "MIG_METRICS_ADDR",
    flag: "--metrics-addr <host:port>",
    description: "a separate, unauthenticated /metrics listener (then the main listener no longer serves /metrics)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "httpTlsCert",
    env: "MIG_HTTP_TLS_CERT",
    flag: "--http-tls-cert <path>",
    description: "PEM certificate (chain) for HTTPS on the HTTP listener; needs MIG_HTTP_TLS_KEY",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "httpTlsKey",
    env: "MIG_HTTP_TLS_KEY",
    flag: "--http-tls-key <path>",
    description: "PEM private key for HTTPS on the HTTP listener",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "policyFile",
    env: "MIG_POLICY_FILE",
    flag: "--policy-file <path>",
    description:
      "YAML or JSON policy: per-tenant and per-capability rate limits, capability tenant allow lists (docs/security.md)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "tenantRateLimit",
    env: "MIG_TENANT_RATE_LIMIT",
    flag: "--tenant-rate-limit <rate/burst>",
    description: "default INVOKE rate limit per tenant, per process, e.g. 100/200",
    defaultValue: undefined,
    parse: parseRateLimit("MIG_TENANT_RATE_LIMIT"),
  },
  {
    key: "capabilityRateLimit",
    env: "MIG_CAPABILITY_RATE_LIMIT",
    flag: "--capability-rate-limit <rate/burst>",
    description: "default INVOKE rate limit per tenant and capability, per process",
    defaultValue: undefined,
    parse: parseRateLimit("MIG_CAPABILITY_RATE_LIMIT"),
  },
  {
    key: "cancelSameSubject",
    env: "MIG_CANCEL_SAME_SUBJECT",
    flag: "--cancel-same-subject <bool>",
    description: "CANCEL only by the subject (not just the tenant) that started the invocation",
    defaultValue: false,
    parse: boolean("MIG_CANCEL_SAME_SUBJECT"),
  },
  {
    key: "auditFile",
    env: "MIG_AUDIT_FILE",
    flag: "--audit-file <path>",
    description: "also append every audit record to this JSONL file",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "mcpManifest",
    env: "MIG_MCP_MANIFEST",
    flag: "--mcp-manifest <path>",
    description:
      "MCP adapter manifest (YAML): tool, resource and prompt names of capabilities on /mcp; without it every capability is a tool named by its id (docs/mcp.md)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "mcpResourceUrl",
    env: "MIG_MCP_RESOURCE_URL",
    flag: "--mcp-resource-url <url>",
    description:
      "public URL of /mcp, the `resource` of its OAuth protected-resource metadata (RFC 9728); default: from the request's Host",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "mcpAuthorizationServers",
    env: "MIG_MCP_AUTHORIZATION_SERVERS",
    flag: "--mcp-authorization-servers <urls>",
    description:
      "comma-separated issuer URLs that /mcp's protected-resource metadata names as its authorization servers; default: MIG_JWT_ISSUER",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "auditMaxAgeMs",
    env: "MIG_AUDIT_MAX_AGE_MS",
    flag: "--audit-max-age-ms <ms>",
    description: "how long the MIG_AUDIT JetStream stream keeps records",
    defaultValue: 30 * 24 * 3600 * 1000,
    parse: integer("MIG_AUDIT_MAX_AGE_MS", 60_000, 3650 * 24 * 3600 * 1000),
  },
  {
    key: "auditMaxBytes",
    env: "MIG_AUDIT_MAX_BYTES",
    flag: "--audit-max-bytes <n>",
    description: "size cap of the MIG_AUDIT stream (oldest records go first)",
    defaultValue: 1024 * 1024 * 1024,
    parse: integer("MIG_AUDIT_MAX_BYTES", 1024 * 1024, Number.MAX_SAFE_INTEGER),
  },
  {
    key: "natsConf",
    env: "MIG_NATS_CONF",
    flag: "--nats-conf <path>",
    description: "config file of the embedded nats-server, e.g. nats-server.secure.conf",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsUser",
    env: "MIG_NATS_USER",
    flag: "--nats-user <user>",
    description: "NATS user name of this runtime",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsPassword",
    env: "MIG_NATS_PASSWORD",
    flag: "--nats-password <password>",
    description: "NATS password of this runtime",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsCredsFile",
    env: "MIG_NATS_CREDS_FILE",
    flag: "--nats-creds-file <path>",
    description: "NATS credentials file (decentralized JWT auth) of this runtime",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsTlsCa",
    env: "MIG_NATS_TLS_CA",
    flag: "--nats-tls-ca <path>",
    description: "CA certificate that signs the NATS server's certificate (turns TLS on)",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsTlsCert",
    env: "MIG_NATS_TLS_CERT",
    flag: "--nats-tls-cert <path>",
    description: "client certificate for NATS mutual TLS",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsTlsKey",
    env: "MIG_NATS_TLS_KEY",
    flag: "--nats-tls-key <path>",
    description: "client key for NATS mutual TLS",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "natsCredentials",
    env: "MIG_NATS_CREDENTIALS",
    flag: "--nats-credentials <path>",
    description:
      "JSON file { url, user, password } to join the bus with, e.g. <data dir>/credentials/runtime.json of a jwt-mode runtime; its url applies when MIG_NATS_URL is unset",
    defaultValue: undefined,
    parse: text,
  },
  {
    key: "allowOpenBus",
    env: "MIG_ALLOW_OPEN_BUS",
    flag: "--allow-open-bus <bool>",
    description:
      "in jwt mode, start even on a bus that anonymous clients can read (MIG_NATS_URL or MIG_NATS_CONF without users): they would see every bearer token",
    defaultValue: false,
    parse: boolean("MIG_ALLOW_OPEN_BUS"),
  },
  {
    key: "heartbeatMs",
    env: "MIG_PROVIDER_HEARTBEAT_MS",
    flag: "--provider-heartbeat-ms <ms>",
    description: "how often a worker renews its registration; three missed beats and it leaves DISCOVER",
    defaultValue: 2000,
    parse: integer("MIG_PROVIDER_HEARTBEAT_MS", 100, 60_000),
  },
  {
    key: "workerConcurrency",
    env: "MIG_WORKER_CONCURRENCY",
    flag: "--worker-concurrency <n>",
    description: "work-queue invocations a worker runs at once",
    defaultValue: 64,
    parse: integer("MIG_WORKER_CONCURRENCY", 1, 10_000),
  },
  {
    key: "workerDirect",
    env: "MIG_WORKER_DIRECT",
    flag: "--worker-direct <bool>",
    description:
      "a worker answers NATS invokes of its best_effort unary capabilities itself (one bus hop) instead of through a gateway, while its auth settings equal every gateway's",
    defaultValue: true,
    parse: boolean("MIG_WORKER_DIRECT"),
  },
] as const satisfies readonly Setting<keyof RuntimeConfig>[];

function topicDiscard(raw: string): TopicDiscard {
  if (raw === "old" || raw === "new") return raw;
  throw new Error(`MIG_TOPIC_DISCARD must be "old" or "new", got "${raw}"`);
}

/** A rate limit that `off` (or `0`) switches off. */
function optionalRateLimit(name: string) {
  const parse = parseRateLimit(name);
  return (raw: string): RateLimit | undefined => (/^\s*(off|0)\s*$/i.test(raw) ? undefined : parse(raw));
}

function authMode(raw: string): AuthMode {
  if (raw === "none" || raw === "jwt") return raw;
  throw new Error(`MIG_AUTH_MODE must be "none" or "jwt", got "${raw}"`);
}

/** Builds a configuration from defaults, then the environment, then explicit overrides. */
export function loadConfig(
  overrides: Partial<RuntimeConfig> = {},
  env: NodeJS.ProcessEnv = process.env,
): RuntimeConfig {
  const config: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const raw = env[setting.env];
    config[setting.key] = raw !== undefined && raw !== "" ? setting.parse(raw) : setting.defaultValue;
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) config[key] = value;
  }
  const result = config as unknown as RuntimeConfig;
  if (
    result.authMode === "jwt" &&
    !result.jwtHs256Secret &&
    !result.jwtPublicKeyFile &&
    !result.jwtJwksFile &&
    !result.jwtJwksUrl
  ) {
    throw new Error(
      "MIG_AUTH_MODE=jwt needs a key: set MIG_JWT_HS256_SECRET, MIG_JWT_PUBLIC_KEY_FILE, MIG_JWT_JWKS_FILE or MIG_JWT_JWKS_URL",
    );
  }
  if (Boolean(result.httpTlsCert) !== Boolean(result.httpTlsKey)) {
    throw new Error("HTTPS needs both MIG_HTTP_TLS_CERT and MIG_HTTP_TLS_KEY");
  }
  return result;
}

/** A throwaway data directory, for tests and benchmarks. */
export function scratchDataDir(label: string): string {
  return join(tmpdir(), `mig-${label}-${process.pid}-${Date.now()}`);
}

/** Splits "host:port" (IPv6 in brackets allowed). */
export function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) throw new Error(`address "${addr}" must look like host:port`);
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`address "${addr}" has a port above 65535`);
  return { host: match[1] ?? match[2] ?? "127.0.0.1", port };
}
