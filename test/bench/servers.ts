// The servers the benchmark rows start: the MIG runtime under test and the raw baselines.
// Each factory returns a ServerSpec; rows.ts combines them into rows.

import { natsServerPid } from "./cpu.ts";
import { startNatsServer } from "./nats-server.ts";
import { Child, sleep, spawnTs } from "./processes.ts";
import type { BenchContext, RunningServer, ServerSpec } from "./types.ts";

/** Accepts the `{"ready":true,...}` line a baseline prints once it serves. */
export function readyLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value = JSON.parse(line) as Record<string, unknown>;
    return value.ready === true ? value : undefined;
  } catch {
    return undefined;
  }
}

/** A bare node:http server answering InvokeResponse-shaped JSON to a POST of `body` to `path`. */
export function bareHttp(path: string, body: string): ServerSpec {
  return {
    label: "bare node:http",
    async start(ctx) {
      const child = spawnTs("baseline-http", ctx.root, "test/bench/baseline-http.ts", []);
      try {
        const ready = await child.waitForLine(readyLine, ctx.startTimeoutMs);
        return {
          target: { kind: "http", url: `${String(ready.url)}${path}`, body },
          failure: () => (child.running ? undefined : child.failure()),
          processes: () => ({ server: child.pid }),
          stop: () => child.stop(),
        };
      } catch (err) {
        await child.stop();
        throw err;
      }
    },
  };
}

/** A bare @grpc/grpc-js server answering mig.v0_1.Invocation/Invoke with an InvokeResponse to `body`. */
export function bareGrpc(body: string): ServerSpec {
  return {
    label: "bare @grpc/grpc-js echo service",
    async start(ctx) {
      const child = spawnTs("baseline-grpc", ctx.root, "test/bench/baseline-grpc-echo.ts", []);
      try {
        const ready = await child.waitForLine(readyLine, ctx.startTimeoutMs);
        return {
          target: { kind: "grpc", address: String(ready.address), body },
          failure: () => (child.running ? undefined : child.failure()),
          processes: () => ({ server: child.pid }),
          stop: () => child.stop(),
        };
      } catch (err) {
        await child.stop();
        throw err;
      }
    },
  };
}

/** A nats-server with a plain responder process on `subject`, replying InvokeResponse JSON. */
export function natsEcho(subject: string, body: string): ServerSpec {
  return {
    label: "raw NATS request/reply (echo responder)",
    async start(ctx) {
      const nats = await startNatsServer(ctx);
      const echo = spawnTs("baseline-nats-echo", ctx.root, "test/bench/baseline-nats-echo.ts", [
        "--servers",
        nats.url,
        "--subject",
        subject,
      ]);
      const stop = async () => {
        await echo.stop();
        await nats.child.stop();
      };
      try {
        await echo.waitForLine(readyLine, ctx.startTimeoutMs);
      } catch (err) {
        await stop();
        throw err;
      }
      return {
        target: { kind: "nats", servers: nats.url, subject, body },
        failure: () => (!nats.child.running ? nats.child.failure() : !echo.running ? echo.failure() : undefined),
        processes: () => ({ responder: echo.pid, nats_server: nats.child.pid }),
        stop,
      };
    },
  };
}

/**
 * The composite raw baseline of an HTTP invoke served by a worker: a bare node:http server forwarding each body by
 * raw NATS request/reply on `subject` to the echo responder process, through a nats-server of its own.
 */
export function httpNatsComposite(path: string, body: string, subject: string): ServerSpec {
  return {
    label: "bare node:http → raw NATS request/reply → echo responder",
    async start(ctx) {
      const echo = await natsEcho(subject, body).start(ctx);
      const servers = echo.target.kind === "nats" ? echo.target.servers : "";
      const front = spawnTs("baseline-http-nats", ctx.root, "test/bench/baseline-http-nats.ts", [
        "--servers",
        servers,
        "--subject",
        subject,
      ]);
      const stop = async () => {
        await front.stop();
        await echo.stop();
      };
      try {
        const ready = await front.waitForLine(readyLine, ctx.startTimeoutMs);
        return {
          target: { kind: "http", url: `${String(ready.url)}${path}`, body },
          failure: () => echo.failure?.() ?? (front.running ? undefined : front.failure()),
          processes: () => ({ server: front.pid, ...echo.processes?.() }),
          stop,
        };
      } catch (err) {
        await stop();
        throw err;
      }
    },
  };
}

/**
 * The standard's Go gateway (`migd`, built by ../shared/tools/standard-go/build.sh) at `binary`, HTTP only: it
 * answers every invoke with an echo of the payload and checks no schema.
 */
export function goGateway(binary: string, path: string, body: string): ServerSpec {
  return {
    label: "the standard's Go gateway (migd)",
    async start(ctx) {
      const port = await ctx.freePort();
      const child = new Child("migd", binary, [], {
        cwd: ctx.root,
        env: { ...process.env, MIGD_ADDR: `127.0.0.1:${port}`, MIGD_ENABLE_METRICS: "true" },
      });
      const url = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + ctx.startTimeoutMs;
      for (;;) {
        if (!child.running) throw new Error(child.failure());
        const answered = await fetch(`${url}${path}`, { method: "POST", body }).then(
          (res) => res.status === 200,
          () => false,
        );
        if (answered) break;
        if (Date.now() > deadline) {
          await child.stop();
          throw new Error(`migd did not answer ${path} within ${ctx.startTimeoutMs} ms: ${child.tail()}`);
        }
        await sleep(100);
      }
      return {
        target: { kind: "http", url: `${url}${path}`, body },
        failure: () => (child.running ? undefined : child.failure()),
        processes: () => ({ server: child.pid }),
        stop: () => child.stop(),
      };
    },
  };
}

/** The runtime's embedded nats-server, once it has written its ports file; undefined before (or elsewhere). */
function embeddedNatsPid(dataDir: string): number | undefined {
  try {
    return natsServerPid(dataDir);
  } catch {
    return undefined;
  }
}

/** Environment and readiness of `cli/main.ts start` as one benchmark child. */
export interface RuntimeOptions {
  /** Extra MIG_* settings for the runtime, on top of the ports, data dir and log level. */
  env?: Record<string, string>;
  /** Extra node flags for the runtime, after the run's own (`--profile`). */
  nodeArgs?: string[];
  /** Extra environment of the worker, when the side has one (OTEL_* settings, for example). */
  workerEnv?: Record<string, string>;
}

export interface StartedRuntime extends RunningServer {
  /** Process id of the runtime's node process (its embedded nats-server is a child of it). */
  pid: number;
  httpBase: string;
  natsUrl: string;
  /** The embedded nats-server's monitoring endpoint (/varz, /jsz). */
  natsMonitorUrl: string;
  grpcAddr: string;
}

/**
 * Starts the MIG runtime (`node --import tsx cli/main.ts start`) on free ports in a temp
 * data directory and waits until HELLO over HTTP answers 200.
 */
export async function startRuntime(
  ctx: BenchContext,
  options: RuntimeOptions = {},
): Promise<Omit<StartedRuntime, "target">> {
  const [httpPort, natsPort, natsMonitorPort, grpcPort] = [
    await ctx.freePort(),
    await ctx.freePort(),
    await ctx.freePort(),
    await ctx.freePort(),
  ];
  const dataDir = await ctx.tempDir("runtime-");
  const httpBase = `http://127.0.0.1:${httpPort}`;
  // MIG_* settings of the calling shell (auth mode, rate limits, …) would change what is
  // measured; the runtime gets only the ones below.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("MIG_")));
  const env = {
    ...inherited,
    MIG_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    MIG_NATS_PORT: String(natsPort),
    MIG_NATS_MONITOR_PORT: String(natsMonitorPort), // its default, 8222, may be taken
    MIG_DATA_DIR: dataDir,
    MIG_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
    MIG_LOG_LEVEL: "warn",
    ...options.env,
  };
  const child = spawnTs("runtime", ctx.root, "cli/main.ts", ["start"], env, [
    ...ctx.runtimeNodeArgs,
    ...(options.nodeArgs ?? []),
  ]);
  const deadline = Date.now() + ctx.startTimeoutMs;
  let lastAnswer = "no answer yet";
  while (Date.now() < deadline) {
    if (!child.running) {
      await child.stop(); // its embedded nats-server may outlive it
      throw new Error(child.failure());
    }
    try {
      const res = await fetch(`${httpBase}/mig/v0.1/hello`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ header: { tenant_id: "bench" } }),
        signal: AbortSignal.timeout(2_000),
      });
      const text = await res.text();
      if (res.status === 200) {
        return {
          pid: child.pid,
          httpBase,
          natsUrl: `127.0.0.1:${natsPort}`,
          natsMonitorUrl: `http://127.0.0.1:${natsMonitorPort}`,
          grpcAddr: `127.0.0.1:${grpcPort}`,
          failure: () => (child.running ? undefined : child.failure()),
          processes: () => ({ runtime: child.pid, nats_server: embeddedNatsPid(dataDir) }),
          stop: () => child.stop(),
        };
      }
      lastAnswer = `HTTP ${res.status}: ${text.slice(0, 200)}`;
    } catch (err) {
      lastAnswer = err instanceof Error ? err.message : String(err);
    }
    await sleep(200);
  }
  await child.stop();
  throw new Error(
    `runtime did not answer HELLO with 200 within ${ctx.startTimeoutMs} ms (last: ${lastAnswer}): ${child.tail()}`,
  );
}

/** The runtime loaded over its HTTP binding with a POST of `body` to `path`. */
export function runtimeHttp(path: string, body: string, options: RuntimeOptions = {}): ServerSpec {
  return {
    label: "MIG runtime, HTTP binding",
    async start(ctx: BenchContext): Promise<RunningServer> {
      const runtime = await startRuntime(ctx, options);
      return { ...runtime, target: { kind: "http", url: `${runtime.httpBase}${path}`, body } };
    },
  };
}

/** The runtime loaded over its gRPC binding with unary Invocation/Invoke of `body` (InvokeRequest as wire JSON). */
export function runtimeGrpc(body: string, options: RuntimeOptions = {}): ServerSpec {
  return {
    label: "MIG runtime, gRPC binding",
    async start(ctx: BenchContext): Promise<RunningServer> {
      const runtime = await startRuntime(ctx, options);
      return { ...runtime, target: { kind: "grpc", address: runtime.grpcAddr, body } };
    },
  };
}

/**
 * Starts the runtime and one `mig worker` process hosting `module`, and waits until the gateway
 * lists `capability` from the worker (the runtime itself does not host it, so every call crosses
 * the bus to the worker and back).
 */
export async function startRuntimeWithWorker(
  ctx: BenchContext,
  module: string,
  capability: string,
  options: RuntimeOptions = {},
  /** Wait until the worker's direct lane answers NATS invokes (a best_effort unary capability measured over NATS). */
  directLane = false,
): Promise<Omit<StartedRuntime, "target"> & { workerPid: number }> {
  const runtime = await startRuntime(ctx, options);
  const worker = spawnTs(
    "worker",
    ctx.root,
    "cli/main.ts",
    ["worker", module],
    {
      ...process.env,
      MIG_NATS_URL: `nats://${runtime.natsUrl}`,
      MIG_LOG_LEVEL: "info",
      ...options.workerEnv,
    },
    ctx.runtimeNodeArgs,
  );
  const stop = async () => {
    await worker.stop();
    await runtime.stop();
  };
  try {
    await worker.waitForLine((line) => (line.includes('"worker serving"') ? true : undefined), ctx.startTimeoutMs);
    // Ready when the gateway lists the worker's capability (its registry watch has seen the registration).
    const deadline = Date.now() + ctx.startTimeoutMs;
    for (;;) {
      const res = await fetch(`${runtime.httpBase}/mig/v0.1/discover`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ header: { tenant_id: "bench" } }),
      });
      const answer = (await res.json()) as { capabilities?: { id: string }[] };
      if (answer.capabilities?.some((c) => c.id === capability)) break;
      if (Date.now() > deadline)
        throw new Error(`the runtime did not list ${capability} from the worker within ${ctx.startTimeoutMs} ms`);
      await sleep(100);
    }
    // A best_effort capability takes the worker's direct lane for NATS invokes from an instant ~1 s after
    // its registration (docs/bindings/provider-protocol.md section 9): measure that lane, not the switch.
    if (directLane && process.env.MIG_WORKER_DIRECT !== "false") {
      await worker.waitForLine(
        (line) => (line.includes('"direct lane answering NATS invokes"') ? true : undefined),
        ctx.startTimeoutMs,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ...runtime,
    workerPid: worker.pid,
    failure: () => runtime.failure?.() ?? (worker.running ? undefined : worker.failure()),
    processes: () => {
      const { runtime: gateway, ...rest } = runtime.processes?.() ?? {};
      return { gateway, worker: worker.pid, ...rest };
    },
    stop,
  };
}

/**
 * The runtime loaded over its NATS binding on `subject`, the capability served by one `mig worker`
 * process hosting `module` (the runtime itself does not host it, so every call crosses the bus twice).
 */
export function runtimeNatsWorker(
  subject: string,
  body: string,
  module: string,
  capability: string,
  options: RuntimeOptions = {},
): ServerSpec {
  return {
    label: "MIG runtime, NATS binding, provider in a mig worker",
    async start(ctx: BenchContext): Promise<RunningServer> {
      const started = await startRuntimeWithWorker(ctx, module, capability, options, true);
      return { ...started, target: { kind: "nats", servers: started.natsUrl, subject, body } };
    },
  };
}

/** The runtime loaded over its HTTP binding (POST `body` to `path`), the capability served by a `mig worker` process. */
export function runtimeHttpWorker(
  path: string,
  body: string,
  module: string,
  capability: string,
  options: RuntimeOptions = {},
): ServerSpec {
  return {
    label: "MIG runtime, HTTP binding, provider in a mig worker",
    async start(ctx: BenchContext): Promise<RunningServer> {
      const started = await startRuntimeWithWorker(ctx, module, capability, options);
      return { ...started, target: { kind: "http", url: `${started.httpBase}${path}`, body } };
    },
  };
}
