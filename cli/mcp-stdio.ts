// `mig mcp --stdio`: an MCP server on standard input and output for desktop clients, in front of the MIG endpoint
// named by --url / MIG_URL, with the token of MIG_TOKEN and the tenant of MIG_TENANT. Standard output carries only
// MCP messages; every note goes to standard error.
import { randomUUID } from "node:crypto";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { loadManifest, McpSurface } from "../bindings/mcp/manifest.ts";
import { buildMcpServer } from "../bindings/mcp/mcp-server.ts";
import { connect } from "../client/index.ts";
import { ClientBackend } from "./mcp-client-backend.ts";

export interface McpStdioOptions {
  url: string;
  token?: string | undefined;
  tenant?: string | undefined;
  timeout?: number | undefined;
  manifest?: string | undefined;
}

export async function serveMcpStdio(options: McpStdioOptions): Promise<void> {
  const log = (message: string) => process.stderr.write(`mig mcp: ${message}\n`);
  const surface = new McpSurface(options.manifest ? loadManifest(options.manifest) : undefined);
  // One MCP connection is one MIG session: its calls share a session id.
  const client = await connect(options.url, {
    ...(options.token ? { token: options.token } : {}),
    ...(options.tenant ? { tenant: options.tenant } : {}),
    ...(options.timeout ? { timeoutMs: options.timeout } : {}),
    sessionId: randomUUID(),
  });
  const backend = new ClientBackend(client, { url: options.url, token: options.token, tenant: options.tenant, log });
  const onerror = (error: Error) => log(error.message);

  const handle = serveStdio(
    async () => {
      // MCP's handshake is MIG's: HELLO checks the endpoint, the token and the tenant. A failure is told on standard
      // error and the server still starts: each call then answers the endpoint's error, as it stands at that time.
      const hello = await backend.hello({ method: "initialize" }).catch((err: unknown) => {
        log(`HELLO to ${options.url} failed: ${(err as Error).message}`);
        return undefined;
      });
      return buildMcpServer({ backend, surface, hello, onerror });
    },
    { onerror },
  );
  log(`serving MCP on standard input/output for ${options.url}`);

  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await handle.close().catch(() => undefined);
    await client.close().catch(() => undefined);
    process.exit(0);
  };
  // The client closing its end of the pipe ends the server (the MCP stdio binding's guidance).
  process.stdin.once("end", close);
  process.stdin.once("close", close);
  process.once("SIGINT", close);
  process.once("SIGTERM", close);
}
