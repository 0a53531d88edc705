// Runtime configuration: one table of settings, each readable from an environment variable or a CLI flag.
import { tmpdir } from "node:os";
import { join } from "node:path";

export type AuthMode = "none" | "jwt";

export interface RuntimeConfig {
  httpAddr: string;
  grpcAddr: string;
  natsUrl: string | undefined;
  natsPort: number;
  natsMonitorPort: number;
  dataDir: string;
  authMode: AuthMode;
  jwtHs256Secret: string | undefined;
  logLevel: string;
  serverId: string | undefined;
  maxBodyBytes: number;
  idempotencyWindowMs: number;
  maxDeadlineMs: number;
  capacity: number;
  eventMaxPayloadBytes: number;
  eventMaxAgeMs: number;
  maxInflightLimit: number;
  replayRatePerSec: number;
  replayMaxEvents: number;
  deadLetterAfter: number;
}

interface Setting<K extends keyof RuntimeConfig> {
  key: K;
  env: string;
  flag: string;
  description: string;
  defaultValue: RuntimeConfig[K];
  parse: (raw: string) => RuntimeConfig[K];
}

function integer(name: string, min: number, max: number) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer between ${min} and ${max}, got "${raw}"`);
    }
    return value;
  };
}

const text = (raw: string) => raw;

export const SETTINGS = [
  { key: "httpAddr", env: "MIG_HTTP_ADDR", flag: "--http-addr <host:port>", description: "HTTP listener (JSON, SSE, WebSocket, /metrics, /admin)", defaultValue: "127.0.0.1:8080", parse: text },
  { key: "grpcAddr", env: "MIG_GRPC_ADDR", flag: "--grpc-addr <host:port>", description: "gRPC listener", defaultValue: "127.0.0.1:9090", parse: text },
  { key: "natsUrl", env: "MIG_NATS_URL", flag: "--nats-url <url>", description: "NATS server or cluster to join; unset starts an embedded nats-server", defaultValue: undefined, parse: text },
  { key: "natsPort", env: "MIG_NATS_PORT", flag: "--nats-port <port>", description: "client port of the embedded nats-server (0 picks a free one)", defaultValue: 4222, parse: integer("MIG_NATS_PORT", 0, 65535) },
  { key: "natsMonitorPort", env: "MIG_NATS_MONITOR_PORT", flag: "--nats-monitor-port <port>", description: "monitoring port of the embedded nats-server (0 picks a free one)", defaultValue: 8222, parse: integer("MIG_NATS_MONITOR_PORT", 0, 65535) },
  { key: "dataDir", env: "MIG_DATA_DIR", flag: "--data-dir <dir>", description: "where the embedded nats-server keeps JetStream data", defaultValue: "./data", parse: text },
  { key: "authMode", env: "MIG_AUTH_MODE", flag: "--auth-mode <mode>", description: "`none` (anonymous callers, tenant from the request) or `jwt`", defaultValue: "none", parse: authMode },
  { key: "jwtHs256Secret", env: "MIG_JWT_HS256_SECRET", flag: "--jwt-hs256-secret <secret>", description: "shared secret for HS256 tokens in jwt mode", defaultValue: undefined, parse: text },
  { key: "logLevel", env: "MIG_LOG_LEVEL", flag: "--log-level <level>", description: "pino level: fatal, error, warn, info, debug, trace", defaultValue: "info", parse: text },
  { key: "serverId", env: "MIG_SERVER_ID", flag: "--server-id <id>", description: "server_id reported by HELLO (default: host name and process id)", defaultValue: undefined, parse: text },
  // Events (docs/events.md).
  { key: "eventMaxPayloadBytes", env: "MIG_EVENT_MAX_PAYLOAD_BYTES", flag: "--event-max-payload-bytes <n>", description: "largest event payload PUBLISH accepts (JSON bytes)", defaultValue: 1024 * 1024, parse: integer("MIG_EVENT_MAX_PAYLOAD_BYTES", 1, 6 * 1024 * 1024) },
  { key: "eventMaxAgeMs", env: "MIG_EVENT_MAX_AGE_MS", flag: "--event-max-age-ms <ms>", description: "how long a topic's events are kept in JetStream", defaultValue: 7 * 24 * 3600 * 1000, parse: integer("MIG_EVENT_MAX_AGE_MS", 1000, 3650 * 24 * 3600 * 1000) },
  { key: "maxInflightLimit", env: "MIG_MAX_INFLIGHT_LIMIT", flag: "--max-inflight-limit <n>", description: "largest max_inflight a subscriber may ask for", defaultValue: 10_000, parse: integer("MIG_MAX_INFLIGHT_LIMIT", 1, 1_000_000) },
  { key: "replayRatePerSec", env: "MIG_REPLAY_RATE_PER_SEC", flag: "--replay-rate-per-sec <n>", description: "replayed events per second per subscription (0: unthrottled)", defaultValue: 50_000, parse: integer("MIG_REPLAY_RATE_PER_SEC", 0, 100_000_000) },
  { key: "replayMaxEvents", env: "MIG_REPLAY_MAX_EVENTS", flag: "--replay-max-events <n>", description: "how far behind the end of a topic one subscription may start (events)", defaultValue: 100_000, parse: integer("MIG_REPLAY_MAX_EVENTS", 0, 1_000_000_000) },
  { key: "deadLetterAfter", env: "MIG_DEAD_LETTER_AFTER", flag: "--dead-letter-after <n>", description: "deliveries of one event before it goes to the dead-letter subject", defaultValue: 5, parse: integer("MIG_DEAD_LETTER_AFTER", 1, 1000) },
  { key: "maxBodyBytes", env: "MIG_MAX_BODY_BYTES", flag: "--max-body-bytes <n>", description: "largest request body any binding accepts", defaultValue: 2 * 1024 * 1024, parse: integer("MIG_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024) },
  { key: "idempotencyWindowMs", env: "MIG_IDEMPOTENCY_WINDOW_MS", flag: "--idempotency-window-ms <ms>", description: "how long an idempotency key's first result is kept (KV bucket TTL)", defaultValue: 10 * 60 * 1000, parse: integer("MIG_IDEMPOTENCY_WINDOW_MS", 1000, 7 * 24 * 3600 * 1000) },
  { key: "maxDeadlineMs", env: "MIG_MAX_DEADLINE_MS", flag: "--max-deadline-ms <ms>", description: "upper bound on a caller's deadline_ms", defaultValue: 10 * 60 * 1000, parse: integer("MIG_MAX_DEADLINE_MS", 1, 24 * 3600 * 1000) },
  { key: "capacity", env: "MIG_CAPACITY", flag: "--capacity <n>", description: "in-flight invocations this process takes before HEARTBEAT reports full load", defaultValue: 1024, parse: integer("MIG_CAPACITY", 1, 1_000_000) },
] as const satisfies readonly Setting<keyof RuntimeConfig>[];

function authMode(raw: string): AuthMode {
  if (raw === "none" || raw === "jwt") return raw;
  throw new Error(`MIG_AUTH_MODE must be "none" or "jwt", got "${raw}"`);
}

/** Builds a configuration from defaults, then the environment, then explicit overrides. */
export function loadConfig(overrides: Partial<RuntimeConfig> = {}, env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const config: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const raw = env[setting.env];
    config[setting.key] = raw !== undefined && raw !== "" ? setting.parse(raw) : setting.defaultValue;
  }
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) config[key] = value;
  }
  const result = config as unknown as RuntimeConfig;
  if (result.authMode === "jwt" && !result.jwtHs256Secret) {
    throw new Error("MIG_AUTH_MODE=jwt needs a key: set MIG_JWT_HS256_SECRET");
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
