// The `mig` command line: `mig start` runs a whole runtime process (bus, bindings, demo provider); `mig worker` hosts providers.
import { existsSync } from "node:fs";
import { Command, Option } from "commander";
import { startGrpcBinding } from "../bindings/grpc/server.ts";
import { startMetricsListener } from "../bindings/http/metrics-listener.ts";
import { startHttpBinding } from "../bindings/http/server.ts";
import { startNatsEvents } from "../bindings/nats/events.ts";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { integer, loadConfig, type RuntimeConfig, SETTINGS } from "../runtime/base/config.ts";
import { createLogger, type Logger } from "../runtime/base/logger.ts";
import { runtimeCredentialsFile } from "../runtime/bus/bus-credentials.ts";
import { observatoryInfer } from "../runtime/provider/demo-provider.ts";
import { loadProviderModules } from "../runtime/provider/provider-modules.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { type DevClusterOptions, devCluster } from "./dev-cluster.ts";
import { stopGateway } from "./shutdown.ts";

function addSettings(command: Command): Command {
  for (const setting of SETTINGS) {
    command.addOption(new Option(setting.flag, `${setting.description} (env ${setting.env})`));
  }
  return command;
}

/** Flag values override the environment; each is parsed by the same rule as its variable. */
function overridesFrom(options: Record<string, string | undefined>): Partial<RuntimeConfig> {
  const overrides: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const raw = options[setting.key];
    if (raw !== undefined) overrides[setting.key] = setting.parse(raw);
  }
  return overrides as Partial<RuntimeConfig>;
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

async function start(options: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(overridesFrom(options));
  const logger = createLogger(config.logLevel);
  const starting = () => MigRuntime.start(config, { logger, capabilities: [observatoryInfer] });
  // On a bus of its own the runtime started the server; a cluster it joins may still be electing leaders.
  const runtime = config.natsUrl ? await patientlyWithJetStream(logger, starting) : await starting();
  const http = await startHttpBinding(runtime, runtime.authenticator, config.httpAddr);
  logger.info({ url: http.url }, "HTTP binding listening (MIG API, /metrics, /admin/v0.1)");
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
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

async function worker(modules: string[], options: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(overridesFrom(options));
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
  const definitions = await loadProviderModules(modules);
  const { runtime, host } = await patientlyWithJetStream(logger, async () => {
    // A direct lane decides from the fleet's registry, as gateways do (docs/bindings/provider-protocol.md §9).
    const runtime = await MigRuntime.start(config, { logger, fleet: config.workerDirect });
    try {
      const host = await WorkerHost.start(runtime, definitions, {
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
    await runtime.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

const WORKER_BUS_HELP = `
Joining the bus:
  A gateway in auth mode jwt on its embedded bus (no MIG_NATS_URL, no MIG_NATS_CONF) generates the bus's users and
  writes <data dir>/credentials/runtime.json ({ "url", "user", "password" }, readable by its owner only).
  - on the same host: run the worker with the gateway's MIG_DATA_DIR; it reads that file (no MIG_NATS_URL needed).
  - elsewhere: copy the file and set MIG_NATS_CREDENTIALS=<path> (MIG_NATS_URL, if set, overrides its url).
  - any other bus: MIG_NATS_URL, with MIG_NATS_USER and MIG_NATS_PASSWORD or MIG_NATS_CREDS_FILE if it has users.
  Foreign providers (docs/bindings/provider-protocol.md) use <data dir>/credentials/provider.json instead.

Answering NATS callers itself (the direct lane, MIG_WORKER_DIRECT):
  The worker answers NATS invokes of its best_effort unary capabilities only while its auth and policy settings
  (MIG_AUTH_MODE, MIG_JWT_*, MIG_POLICY_FILE, the rate limits, MIG_CANCEL_SAME_SUBJECT, the admin scopes) equal
  every live gateway's, so it enforces the same policy; otherwise the gateways answer those callers, and the
  worker's log says which settings differ. Start it with the gateways' settings to keep the one-hop lane.
`;

const program = new Command("mig").description("MIG v0.1 runtime on an embedded NATS bus");
addSettings(
  program.command("start").description("run a runtime: embedded bus (unless MIG_NATS_URL), bindings, demo provider"),
).action((options: Record<string, string | undefined>) =>
  start(options).catch((err: unknown) => {
    process.stderr.write(`mig start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }),
);

addSettings(
  program
    .command("worker")
    .description(
      "host the capabilities that provider modules export, taking their work from the bus (needs MIG_NATS_URL or a credentials file)",
    )
    .argument("<module...>", "modules exporting defineCapability(...) results")
    .addHelpText("after", WORKER_BUS_HELP),
).action((modules: string[], options: Record<string, string | undefined>) =>
  worker(modules, options).catch((err: unknown) => {
    process.stderr.write(`mig worker: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }),
);

program
  .command("dev")
  .description("tools for trying the runtime out on this machine")
  .command("cluster")
  .description(
    "run a fleet here: a NATS JetStream cluster, gateways and workers on fixed local ports; Ctrl-C stops them all",
  )
  .argument("[module...]", "provider modules the workers host", ["runtime/provider/demo-provider.ts"])
  .option("--nodes <n>", "nats-server nodes (JetStream keeps min(3, n) copies)", integer("--nodes", 1, 5), 3)
  .option("--gateways <n>", "gateways", integer("--gateways", 1, 5), 2)
  .option("--workers <n>", "workers hosting the modules", integer("--workers", 0, 10), 2)
  .option(
    "--base-port <port>",
    "the first node's client port (routes on this + 2000)",
    integer("--base-port", 1024, 60000),
    4222,
  )
  .option(
    "--http-port <port>",
    "the first gateway's HTTP port (the others count up)",
    integer("--http-port", 1024, 65000),
    8080,
  )
  .option(
    "--grpc-port <port>",
    "the first gateway's gRPC port (the others count up)",
    integer("--grpc-port", 1024, 65000),
    9090,
  )
  .option(
    "--data-dir <dir>",
    "where the nodes and gateways keep their data (under dev-cluster/)",
    process.env.MIG_DATA_DIR ?? "./data",
  )
  .action((modules: string[], options: Omit<DevClusterOptions, "modules">) =>
    devCluster({ ...options, modules }, createLogger("info")).catch((err: unknown) => {
      process.stderr.write(`mig dev cluster: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    }),
  );

await program.parseAsync(process.argv);
