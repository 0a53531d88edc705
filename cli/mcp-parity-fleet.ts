// The throwaway MIG fleet of `mig mcp parity`: a gateway on its own embedded bus (random ports, a temporary data
// directory) serving HTTP with /mcp, and a worker in the same process attaching the MCP server as `mig worker --mcp`
// does (its own runtime on the gateway's bus, the server's tools registered in the fleet's registry).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHttpBinding } from "../bindings/http/server.ts";
import { mountMcpEndpoint } from "../bindings/mcp/http-endpoint.ts";
import type { UpstreamSpec } from "../bindings/mcp/upstream-config.ts";
import { McpUpstreams } from "../bindings/mcp/upstream-set.ts";
import { loadConfig } from "../runtime/base/config.ts";
import type { Logger } from "../runtime/base/logger.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";

export interface ParityFleet {
  /** The gateway's MCP endpoint. */
  mcpUrl: string;
  /** The capability ids the worker registered for the server (its tools, prompts and resources). */
  capabilities: string[];
  close(): Promise<void>;
}

/** How long the gateway may take to list what the worker registered. */
const REGISTRY_WAIT_MS = 30_000;

export async function startParityFleet(spec: UpstreamSpec, logger: Logger): Promise<ParityFleet> {
  const dataDir = mkdtempSync(join(tmpdir(), "mig-mcp-parity-"));
  const closers: (() => Promise<unknown>)[] = [async () => rmSync(dataDir, { recursive: true, force: true })];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer().catch(() => undefined);
  };
  try {
    // The environment's MIG_* settings are not read: the fleet is this command's own, whatever the shell runs.
    const config = loadConfig(
      { natsPort: 0, natsMonitorPort: 0, dataDir, httpAddr: "127.0.0.1:0", authMode: "none", logLevel: logger.level },
      {},
    );
    const gateway = await MigRuntime.start(config, { logger });
    closers.push(() => gateway.stop());
    const http = await startHttpBinding(gateway, gateway.authenticator, config.httpAddr);
    closers.push(() => http.close());
    const endpoint = mountMcpEndpoint(http, gateway, gateway.authenticator);
    closers.push(() => endpoint.close());

    const upstreams = await McpUpstreams.attach([spec], logger);
    closers.push(() => upstreams.close());
    const workerConfig = loadConfig({ natsUrl: gateway.natsUrl, dataDir, logLevel: logger.level }, {});
    const worker = await MigRuntime.start(workerConfig, { logger, fleet: true });
    closers.push(() => worker.stop());
    const host = await WorkerHost.start(worker, upstreams.definitions(), { heartbeatMs: 500 });
    closers.push(() => host.stop());
    upstreams.onChange(() => void host.update(upstreams.definitions()).catch(() => undefined));

    const capabilities = upstreams.definitions().map((definition) => definition.descriptor.id);
    if (capabilities.length === 0) throw new Error(`the MCP server (${spec.origin}) did not answer its tool list`);
    const until = Date.now() + REGISTRY_WAIT_MS;
    while (!capabilities.every((id) => gateway.capabilities.get(id))) {
      if (Date.now() > until) throw new Error("the gateway did not list the worker's capabilities in time");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { mcpUrl: `${http.url}/mcp`, capabilities, close };
  } catch (err) {
    await close();
    throw err;
  }
}
