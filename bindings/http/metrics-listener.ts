// A separate listener that serves only /metrics (MIG_METRICS_ADDR), for a scrape network kept apart from callers.
import { createServer, type Server } from "node:http";
import type { MigRuntime } from "../../runtime/mod.ts";
import { listenOn } from "./listen.ts";

export interface MetricsListener {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsListener(runtime: MigRuntime, addr: string): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" || path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("only GET /metrics is served here\n");
      return;
    }
    runtime.metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": runtime.metrics.registry.contentType });
        res.end(text);
      },
      () => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("metrics could not be collected\n");
      },
    );
  });
  const bound = await listenOn(server, addr);
  return {
    url: `http://${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
