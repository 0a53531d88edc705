// `mig start` and `mig worker`: the serving commands, loaded only when one of them runs (the client commands start
// without loading the runtime).
import { existsSync } from "node:fs";
import { startGrpcBinding } from "../bindings/grpc/server.ts";
import { startMetricsListener } from "../bindings/http/metrics-listener.ts";
import { startHttpBinding } from "../bindings/http/server.ts";
import { mountMcpEndpoint } from "../bindings/mcp/http-endpoint.ts";
import { loadManifest, McpSurface } from "../bindings/mcp/manifest.ts";
import { type UpstreamOptions, upstreamSpecs } from "../bindings/mcp/upstream-config.ts";
import { McpUpstreams } from "../bindings/mcp/upstream-set.ts";
import { startNatsEvents } from "../bindings/nats/events.ts";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig, type RuntimeConfig, SETTINGS } from "../runtime/base/config.ts";
import { createLogger, type Logger } from "../runtime/base/logger.ts";
import { startTracing } from "../runtime/base/tracing-sdk.ts";
import { runtimeCredentialsFile } from "../runtime/bus/bus-credentials.ts";
import { demoFixtures, observatoryInfer } from "../runtime/provider/demo-provider.ts";
import { loadProviderModules } from "../runtime/provider/provider-modules.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { conformanceSelfCheck } from "./self-check.ts";
import { stopGateway } from "./shutdown.ts";

/** Flag values override the environment; each is parsed by the same rule as its variable. */
function overridesFrom(options: Record<string, string | undefined>): Partial<RuntimeConfig> {
  const overrides: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const raw = options[setting.key];
    if (raw !== undefined) overrides[setting.key] = setting.parse(raw);
  }
  return overrides as Partial<RuntimeConfig>;
}

/** A comma-separated setting as a list. */
function listOf(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

/** Start attempts while JetStream does not answer in time, and the pause between them. */
const START_ATTEMPTS = 4;
const START_RETRY_MS = 1_000;

/**
 * Runs `start` again while it fails because JetStream did not answer in time: a cluster that is electing leaders or
 * placing the copies of new streams (several processes starting at once) can take longer than one API timeout.
 */
async function patientlyWithJetStream<T>(logger: Logger, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const timedOut = err instanceof Error && /timeout/i.test(`${err.name} ${err.message}`);
      if (!timedOut || attempt >= START_ATTEMPTS) throw err;
      logger.warn({ attempt, err: (err as Error).message }, "JetStream did not answer in time; starting again");
      await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
    }
  }
}

export async function start(options: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(overridesFrom(options));
  const logger = createLogger(config.logLevel);
  const tracing = await startTracing("mig-gateway", logger);
  // Read first: a manifest that is not valid stops the start before anything listens.
  const mcpSurface = new McpSurface(config.mcpManifest ? loadManifest(config.mcpManifest) : undefined);
  // The demo capability, and the fixtures the conformance harness needs (slow, streaming, scoped): docs/conformance.md.
  const starting = () => MigRuntime.start(config, { logger, capabilities: [observatoryInfer, ...demoFixtures()] });
  // On a bus of its own the runtime started the server; a cluster it joins may still be electing leaders.
  const runtime = config.natsUrl ? await patientlyWithJetStream(logger, starting) : await starting();
  const http = await startHttpBinding(runtime, runtime.authenticator, config.httpAddr);
  logger.info({ url: http.url }, "HTTP binding listening (MIG API, /metrics, /admin/v0.1)");
  // MCP at /mcp on the same listener, stateless: its requests drain with the HTTP binding's.
  mountMcpEndpoint(http, runtime, runtime.authenticator, {
    surface: mcpSurface,
    resourceUrl: config.mcpResourceUrl,
    authorizationServers: listOf(config.mcpAuthorizationServers ?? config.jwtIssuer),
  });
  logger.info(
    { url: `${http.url}/mcp`, manifest: config.mcpManifest ?? "none (tools named by capability id)" },
    "MCP endpoint listening (Streamable HTTP, stateless)",
  );
  const grpc = await startGrpcBinding(runtime, runtime.authenticator, config.grpcAddr);
  logger.info({ addr: grpc.address }, "gRPC binding listening (mig.v0_1 services, server reflection)");
  const metrics = config.metricsAddr ? await startMetricsListener(runtime, config.metricsAddr) : undefined;
  if (metrics) logger.info({ url: `${metrics.url}/metrics` }, "metrics listener");
  const nats = await startNatsBinding(runtime, runtime.authenticator);
  logger.info({ url: runtime.natsUrl, subjects: nats.subjects, queue: nats.queue }, "NATS binding listening");
  const natsEvents = startNatsEvents(runtime, runtime.authenticator);
  logger.info(
    { subjects: "mig.v0_1.<tenant>.events.<topic>, mig.v0_1.<tenant>.subscribe.<topic>" },
    "NATS events binding listening (PUBLISH, SUBSCRIBE)",
  );
  // The admin routes report on the whole process: GET /admin/v0.1/health/conformance runs the Core profile against
  // these endpoints (cli/self-check.ts), GET /admin/v0.1/connections says the NATS binding runs.
  http.setAdminHooks({
    selfCheck: conformanceSelfCheck(runtime, { http: http.url, grpc: grpc.address, nats: true }),
    natsBinding: true,
  });
  if (config.authMode === "none") {
    logger.info(
      "auth mode none: callers are anonymous and name their tenant per request; set MIG_AUTH_MODE=jwt for anything shared",
    );
  } else {
    logger.info(
      { algorithms: runtime.authenticator.algorithms, admin_scope: config.adminScope },
      "auth mode jwt: every call needs a bearer token",
    );
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await stopGateway(runtime, [nats, natsEvents, http, grpc, metrics], config.drainTimeoutMs, logger);
    await tracing.shutdown();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

export async function worker(
  modules: string[],
  options: Record<string, string | undefined> & UpstreamOptions,
): Promise<void> {
  const config = loadConfig(overridesFrom(options));
  const mcpSpecs = upstreamSpecs(options);
  if (modules.length === 0 && mcpSpecs.length === 0) {
    throw new Error(
      "name the provider modules to host, or MCP servers to attach (--mcp, --mcp-url or --mcp-config); see mig worker --help",
    );
  }
  // A gateway in jwt mode on its embedded bus leaves the runtime user's credentials in its data directory: a worker
  // given the same MIG_DATA_DIR joins with them, and needs no MIG_NATS_URL either.
  const gatewayFile = runtimeCredentialsFile(config.dataDir);
  if (!config.natsCredentials && !config.natsUser && !config.natsCredsFile && existsSync(gatewayFile))
    config.natsCredentials = gatewayFile;
  if (!config.natsUrl && !config.natsCredentials) {
    throw new Error(
      `a worker joins a fleet's bus: set MIG_NATS_URL (or --nats-url) to its NATS server, or MIG_NATS_CREDENTIALS to a credentials file; a jwt-mode gateway writes ${gatewayFile} when its MIG_DATA_DIR is this one`,
    );
  }
  const logger = createLogger(config.logLevel);
  const tracing = await startTracing("mig-worker", logger);
  const definitions = modules.length > 0 ? await loadProviderModules(modules) : [];
  // MCP servers' tools come and go while the worker runs (docs/mcp.md): the host follows their list.
  const upstreams = mcpSpecs.length > 0 ? await McpUpstreams.attach(mcpSpecs, logger) : undefined;
  const moduleIds = new Set(definitions.map((d) => d.descriptor.id));
  const hosted = () => [...definitions, ...(upstreams?.definitions(moduleIds) ?? [])];
  const { runtime, host } = await patientlyWithJetStream(logger, async () => {
    // A direct lane decides from the fleet's registry, as gateways do (docs/bindings/provider-protocol.md §9).
    const runtime = await MigRuntime.start(config, { logger, fleet: config.workerDirect });
    try {
      const host = await WorkerHost.start(runtime, hosted(), {
        heartbeatMs: config.heartbeatMs,
        concurrency: config.workerConcurrency,
        direct: config.workerDirect,
      });
      return { runtime, host };
    } catch (err) {
      await runtime.stop();
      throw err;
    }
  });
  if (upstreams) {
    upstreams.onChange(() => void host.update(hosted()).catch(() => undefined)); // the host logs a failed update
    await host.update(hosted()); // tools listed while the host started
  }
  // A worker has no HTTP binding: its own metrics (its actors, the streams it runs, its calls) on a listener of their own.
  const metrics = config.metricsAddr ? await startMetricsListener(runtime, config.metricsAddr) : undefined;
  if (metrics) logger.info({ url: `${metrics.url}/metrics` }, "metrics listener");
  logger.info(
    { provider_id: host.providerId, capabilities: host.capabilities, url: runtime.natsUrl },
    "worker serving",
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    await host.stop();
    await metrics?.close();
    await upstreams?.close();
    await runtime.stop();
    await tracing.shutdown();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}
