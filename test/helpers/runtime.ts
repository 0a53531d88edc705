// Test helper: a real runtime with its own embedded nats-server (random ports, temp dir) and HTTP binding.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HttpBinding, startHttpBinding } from "../../bindings/http/server.ts";
import { loadConfig, type RuntimeConfig } from "../../runtime/base/config.ts";
import { createLogger } from "../../runtime/base/logger.ts";
import { observatoryInfer } from "../../runtime/provider/demo-provider.ts";
import type { CapabilityDefinition } from "../../runtime/provider/provider.ts";
import { MigRuntime } from "../../runtime/runtime.ts";

export interface TestRuntime {
  runtime: MigRuntime;
  http: HttpBinding;
  dataDir: string;
  post(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; text: string }>;
  stop(): Promise<void>;
}

export async function startTestRuntime(
  options: { config?: Partial<RuntimeConfig>; capabilities?: CapabilityDefinition[] } = {},
): Promise<TestRuntime> {
  const dataDir = mkdtempSync(join(tmpdir(), "mig-test-"));
  const config = loadConfig(
    {
      natsPort: 0,
      natsMonitorPort: 0,
      dataDir,
      httpAddr: "127.0.0.1:0",
      logLevel: "silent",
      // Fair turns engage with the machine's load: tests that hold many calls of one tenant ask for them explicitly
      // (test/fair-share.test.ts), so that a busy CI machine cannot change what another test sees.
      tenantFairInflight: 0,
      ...options.config,
    },
    {},
  );
  const logger = createLogger(config.logLevel);
  const runtime = await MigRuntime.start(config, {
    logger,
    capabilities: [observatoryInfer, ...(options.capabilities ?? [])],
  });
  const http = await startHttpBinding(runtime, runtime.authenticator, config.httpAddr);
  return {
    runtime,
    http,
    dataDir,
    async post(path, body, headers = {}) {
      const res = await fetch(`${http.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: JSON.parse(text), headers: res.headers };
    },
    async get(path, headers = {}) {
      const res = await fetch(`${http.url}${path}`, { headers });
      return { status: res.status, text: await res.text() };
    },
    async stop() {
      await http.close();
      await runtime.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `check` returns a truthy value, polling; rejects after `limitMs` with `what`. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, limitMs = 10_000): Promise<NonNullable<T>> {
  const until = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
