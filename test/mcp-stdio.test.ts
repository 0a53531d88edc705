// `mig mcp --stdio`: the official SDK client's stdio transport spawns the real command, which stands in front of a
// test runtime's HTTP binding (MIG_URL), and lists and calls tools through the MIG client library.
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/client";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** The SDK client with `mig mcp --stdio` as its server process; what the command writes to stderr is kept. */
async function stdioClient(env: Record<string, string>, negotiation: { mode: "legacy" } | { mode: { pin: string } }) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [join(ROOT, "cli/mig.mjs"), "mcp", "--stdio"],
    cwd: ROOT,
    env: { ...getDefaultEnvironment(), ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const client = new Client({ name: "mig-stdio-test", version: "1.0.0" }, { versionNegotiation: negotiation });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

describe("mig mcp --stdio in front of an auth-mode-none endpoint", () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime();
  });
  afterAll(() => t?.stop());

  it.each([
    { revision: "2025-11-25", negotiation: { mode: "legacy" as const } },
    { revision: "2026-07-28", negotiation: { mode: { pin: "2026-07-28" } } },
  ])("lists and calls a tool (revision $revision)", async ({ revision, negotiation }) => {
    const { client, stderr } = await stdioClient({ MIG_URL: t.http.url, MIG_TENANT: "acme" }, negotiation);
    try {
      expect(client.getNegotiatedProtocolVersion()).toBe(revision);
      const { tools } = await client.listTools();
      const infer = tools.find((tool) => tool.name === "observatory.models.infer");
      // The endpoint shows schema bodies to an auth-mode-none caller: the tool carries them inline.
      expect(infer?.inputSchema).toEqual({
        type: "object",
        properties: { input: { type: "string" } },
        required: ["input"],
      });
      const result = await client.callTool({ name: "observatory.models.infer", arguments: { input: "over stdio" } });
      expect(result.structuredContent).toMatchObject({ result: "ok", echo: { input: "over stdio" } });

      // Asking for progress streams the call. The progress notifications themselves are checked over HTTP
      // (test/mcp-server.test.ts): this SDK client's stdio transport drops one it reads in the same chunk as its
      // call's result, so how many arrive here depends on the pipe's timing.
      const progress: number[] = [];
      const streamed = await client.callTool(
        { name: "observatory.models.infer", arguments: { input: "one two" } },
        { onprogress: (p) => progress.push(p.progress) },
      );
      expect(streamed.structuredContent).toEqual({ result: "ok", tokens: 2 });
      expect(progress).toEqual([1, 2].slice(0, progress.length));
      expect(stderr()).toContain(`serving MCP on standard input/output for ${t.http.url}`);
    } finally {
      await client.close();
    }
  });
});

describe("mig mcp --stdio with a token from MIG_TOKEN", () => {
  const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  });
  afterAll(() => t?.stop());

  it("calls as the token's principal; a token without the scope sees no tool", async () => {
    const sign = (scope: string) =>
      new SignJWT({ sub: "desk", tenant_id: "acme", scope })
        .setProtectedHeader({ alg: "HS256" })
        .sign(new TextEncoder().encode(SECRET));
    const allowed = await stdioClient(
      { MIG_URL: t.http.url, MIG_TOKEN: await sign("capability:infer") },
      { mode: "legacy" },
    );
    const other = await stdioClient({ MIG_URL: t.http.url, MIG_TOKEN: await sign("other:scope") }, { mode: "legacy" });
    try {
      const { tools } = await allowed.client.listTools();
      expect(tools.map((tool) => tool.name)).toEqual(["observatory.models.infer"]);
      const result = await allowed.client.callTool({ name: "observatory.models.infer", arguments: { input: "x" } });
      expect(result.structuredContent).toMatchObject({ result: "ok" });
      expect((await other.client.listTools()).tools).toEqual([]);
      const hidden = await other.client
        .callTool({ name: "observatory.models.infer", arguments: { input: "x" } })
        .catch((err: { code?: number }) => err);
      expect((hidden as { code?: number }).code).toBe(-32602);
    } finally {
      await allowed.client.close();
      await other.client.close();
    }
  });
});
