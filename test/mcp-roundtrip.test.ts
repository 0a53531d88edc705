// MCP through MIG and back: the official SDK client (Streamable HTTP) at a gateway's /mcp, mounted as `mig start`
// mounts it, calling the real server-everything that a `mig worker --mcp` process attaches over stdio; what comes
// back is compared with what the same server answers a client of its own. And in jwt mode, two tenants whose scopes
// differ see different tools of a server attached with `auth_scopes` (`--mcp-config`).
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, ProtocolError, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type McpEndpoint, mountMcpEndpoint } from "../bindings/mcp/http-endpoint.ts";
import type { RuntimeConfig } from "../runtime/base/config.ts";
import { runtimeCredentialsFile } from "../runtime/bus/bus-credentials.ts";
import { type MigProcess, ROOT, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const EVERYTHING = join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const REVISIONS = [
  { revision: "2025-11-25", negotiation: { mode: "legacy" as const } },
  { revision: "2026-07-28", negotiation: { mode: { pin: "2026-07-28" } } },
];
type Negotiation = (typeof REVISIONS)[number]["negotiation"];
type Content = { type: string; text?: string }[];

/** A fleet of two processes' worth: a gateway in this process (HTTP with /mcp) and a `mig worker --mcp` process. */
interface Fleet {
  gateway: TestRuntime;
  mcp: McpEndpoint;
  worker: MigProcess;
}

async function startFleet(workerArgs: string[], config: Partial<RuntimeConfig> = {}): Promise<Fleet> {
  const gateway = await startTestRuntime({ config });
  const mcp = mountMcpEndpoint(gateway.http, gateway.runtime, gateway.runtime.authenticator);
  // A jwt-mode gateway's bus has users: the worker joins with the credentials file it wrote.
  const credentials = runtimeCredentialsFile(gateway.dataDir);
  const worker = startMig(["worker", ...workerArgs], {
    MIG_NATS_URL: gateway.runtime.natsUrl,
    MIG_PROVIDER_HEARTBEAT_MS: "500",
    ...(existsSync(credentials) ? { MIG_NATS_CREDENTIALS: credentials } : {}),
    ...(config.authMode === "jwt" ? { MIG_AUTH_MODE: "jwt", MIG_JWT_HS256_SECRET: SECRET } : {}),
  });
  await worker.waitForLog("worker serving", 30_000);
  await waitFor(
    "the gateway to list the server's tools",
    () => gateway.runtime.capabilities.get("everything.trigger-long-running-operation"),
    20_000,
  );
  return { gateway, mcp, worker };
}

async function stopFleet(fleet: Fleet | undefined): Promise<void> {
  await fleet?.worker.stop("SIGTERM");
  await fleet?.mcp.close();
  await fleet?.gateway.stop();
}

async function gatewayClient(url: string, negotiation: Negotiation, headers: Record<string, string>): Promise<Client> {
  const client = new Client({ name: "mig-roundtrip", version: "1.0.0" }, { versionNegotiation: negotiation });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers } }));
  return client;
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("server-everything behind `mig worker --mcp`, called through the gateway's /mcp", () => {
  let fleet: Fleet;
  /** The same server, started for a client of its own: what it answers is what the gateway must hand back. */
  let direct: Client;

  beforeAll(async () => {
    fleet = await startFleet(["--mcp", `"${process.execPath}" "${EVERYTHING}" stdio`, "--mcp-namespace", "everything"]);
    direct = new Client({ name: "mig-roundtrip-direct", version: "1.0.0" });
    await direct.connect(
      new StdioClientTransport({ command: process.execPath, args: [EVERYTHING, "stdio"], stderr: "ignore" }),
    );
  }, 60_000);

  afterAll(async () => {
    await direct?.close();
    await stopFleet(fleet);
  }, 30_000);

  describe.each(REVISIONS)("protocol revision $revision", ({ revision, negotiation }) => {
    let client: Client;
    beforeAll(async () => {
      client = await gatewayClient(fleet.gateway.http.url, negotiation, { "x-tenant-id": "acme" });
    });
    afterAll(() => client?.close());

    it("tools/list shows each of the server's tools as everything.<tool>, with the server's input schema", async () => {
      const { tools } = await client.listTools();
      const own = (await direct.listTools()).tools;
      const listed = new Map(tools.map((tool) => [tool.name, tool]));
      for (const tool of own) {
        const through = listed.get(`everything.${tool.name}`);
        expect(through, `everything.${tool.name}`).toBeDefined();
        const { $schema: _dialect, ...schema } = tool.inputSchema as Record<string, unknown>;
        expect(through!.inputSchema).toEqual(schema);
      }
      // The gateway's own capability is listed beside them.
      expect(listed.has("observatory.models.infer")).toBe(true);
    });

    it("tools/call of echo and get-sum answers what the server answers (its content, as the capability's output)", async () => {
      for (const [name, args] of [
        ["echo", { message: `round trip on ${revision}` }],
        ["get-sum", { a: 19, b: 23 }],
      ] as const) {
        const own = await direct.callTool({ name, arguments: args });
        const through = await client.callTool({ name: `everything.${name}`, arguments: args });
        expect(through.isError).toBeFalsy();
        const output = through.structuredContent as { content: Content; text: string };
        expect(output.content).toEqual(own.content);
        expect(output.text).toBe((own.content as Content)[0]!.text);
        expect(through._meta?.["mig/capability"]).toBe(`everything.${name}`);
      }
    });

    it("trigger-long-running-operation with a progress token: each progress notification, then the result", async () => {
      const events: string[] = [];
      const result = await client.callTool(
        { name: "everything.trigger-long-running-operation", arguments: { duration: 0.8, steps: 4 } },
        { onprogress: (p) => void events.push(`progress ${p.message}`) },
      );
      events.push("result");
      expect(events).toEqual([
        ...[1, 2, 3, 4].map((step) => `progress ${JSON.stringify({ progress: step, total: 4 })}`),
        "result",
      ]);
      expect((result.structuredContent as { text: string }).text).toBe(
        "Long running operation completed. Duration: 0.8 seconds, Steps: 4.",
      );
    });

    it("cancelling a long-running call ends its invocation at once, and the next call is answered", async () => {
      const streamsStarted = async () => {
        const { records } = await fleet.gateway.runtime.readAudit(
          new URLSearchParams({ tenant: "acme", limit: "500" }),
        );
        return records.filter(
          (r) => r.operation === "stream" && r.mcp_name === "everything.trigger-long-running-operation",
        );
      };
      const before = (await streamsStarted()).length;
      const stop = new AbortController();
      const running = deferred<void>();
      const call = client
        .callTool(
          { name: "everything.trigger-long-running-operation", arguments: { duration: 600, steps: 600 } },
          { signal: stop.signal, onprogress: () => running.resolve(), timeout: 700_000 },
        )
        .then(
          () => "resolved",
          () => "rejected",
        );
      // The first progress notification: the server is working on the call, streamed (its progress as frames).
      await running.promise;
      const started = await streamsStarted();
      expect(started).toHaveLength(before + 1);
      const messageId = started.at(-1)!.message_id!;
      const work = fleet.gateway.runtime.work;
      expect(work.streams.has(messageId)).toBe(true);

      stop.abort("the test stops it");
      expect(await call).toBe("rejected");
      // 2025-11-25: notifications/cancelled, a CANCEL of the call's message id; 2026-07-28: the request closed. Either
      // way the gateway ends the stream, long before the server's ten minutes are up.
      await waitFor("the gateway to end the cancelled stream", () => !work.has(messageId));
      expect(work.finishedTenant(messageId)).toBe("acme");
      const next = await client.callTool({ name: "everything.echo", arguments: { message: "still here" } });
      expect((next.structuredContent as { text: string }).text).toBe("Echo: still here");
    }, 30_000);
  });
});

describe("jwt mode: a server attached with auth_scopes, two tenants with different scopes", () => {
  let fleet: Fleet;
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().sign(new TextEncoder().encode(SECRET));

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "mig-mcp-roundtrip-"));
    const config = join(dir, "upstreams.yaml");
    writeFileSync(
      config,
      [
        "upstreams:",
        "  - namespace: everything",
        `    command: ${JSON.stringify(process.execPath)}`,
        `    args: [${JSON.stringify(EVERYTHING)}, stdio]`,
        '    auth_scopes: ["everything:use"]',
        "",
      ].join("\n"),
    );
    fleet = await startFleet(["--mcp-config", config], { authMode: "jwt", jwtHs256Secret: SECRET });
  }, 60_000);

  afterAll(() => stopFleet(fleet), 30_000);

  it.each(REVISIONS)(
    "each sees the tools its scopes allow; the other's answers as unknown ($revision)",
    async ({ negotiation }) => {
      const alice = await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer everything:use" });
      const bob = await token({ sub: "bob", tenant_id: "globex", scope: "capability:infer" });
      const acme = await gatewayClient(fleet.gateway.http.url, negotiation, { authorization: `Bearer ${alice}` });
      const globex = await gatewayClient(fleet.gateway.http.url, negotiation, { authorization: `Bearer ${bob}` });
      try {
        const acmeTools = (await acme.listTools()).tools.map((tool) => tool.name);
        const globexTools = (await globex.listTools()).tools.map((tool) => tool.name);
        expect(acmeTools).toContain("everything.echo");
        expect(acmeTools).toContain("observatory.models.infer");
        expect(globexTools).toEqual(["observatory.models.infer"]);

        const echo = await acme.callTool({ name: "everything.echo", arguments: { message: "for acme" } });
        expect((echo.structuredContent as { text: string }).text).toBe("Echo: for acme");
        const hidden = await globex
          .callTool({ name: "everything.echo", arguments: { message: "for globex" } })
          .catch((err: unknown) => err);
        expect(hidden).toBeInstanceOf(ProtocolError);
        expect((hidden as ProtocolError).code).toBe(-32602);
        expect((hidden as ProtocolError).data).toEqual({ mig_code: "MIG_UNSUPPORTED_CAPABILITY", retryable: false });
      } finally {
        await acme.close();
        await globex.close();
      }
    },
  );
});
