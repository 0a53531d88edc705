// MIG as an MCP server at /mcp: the official SDK client over Streamable HTTP against a real runtime, on both protocol
// revisions (2025-11-25 by `initialize`, 2026-07-28 by `server/discover`), plus the raw wire's bad inputs, jwt mode
// (tenants, scopes, the 401 and its protected-resource metadata) and the Go adapter's empty enum strings.
import { Agent, request } from "node:http";
import { Client, ProtocolError, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import type { NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type McpEndpoint, mountMcpEndpoint } from "../bindings/mcp/http-endpoint.ts";
import { McpSurface, parseManifest } from "../bindings/mcp/manifest.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const OPEN = "schema://test/mcp/open/v1";
const SLOW_INPUT = "schema://test/mcp/slow-input/v1";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const descriptor = (id: string, input = OPEN, authScopes: string[] = []) => ({
  id,
  version: "1.0.0",
  modes: ["unary" as const],
  input_schema_uri: input,
  output_schema_uri: OPEN,
  auth_scopes: authScopes,
});

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The runs of mcp.test.slow by tag: when its handler started, and the reason its signal fired with. */
const slowRuns = new Map<
  string,
  { started: ReturnType<typeof deferred<void>>; aborted: ReturnType<typeof deferred<any>> }
>();
function slowRun(tag: string) {
  let run = slowRuns.get(tag);
  if (!run) slowRuns.set(tag, (run = { started: deferred<void>(), aborted: deferred<any>() }));
  return run;
}

const capabilities = [
  // Waits until its signal fires (a CANCEL or the deadline), and reports why.
  defineCapability(
    descriptor("mcp.test.slow", SLOW_INPUT),
    (payload, { signal }) => {
      const run = slowRun(String(payload.tag));
      run.started.resolve();
      return new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => {
          run.aborted.resolve(signal.reason);
          reject(signal.reason);
        });
      });
    },
    {
      [OPEN]: { type: "object" },
      [SLOW_INPUT]: { type: "object", properties: { tag: { type: "string" } }, required: ["tag"] },
    },
  ),
  // Shows what reached the provider: the header (meta, trace, deadline) and the principal.
  defineCapability(descriptor("mcp.test.context"), (_payload, { header, principal }) => ({
    header,
    subject: principal.subject,
    tenant: principal.tenant_id ?? null,
  })),
  defineCapability(descriptor("mcp.test.secret", OPEN, ["secret:read"]), () => ({ secret: "42" })),
  // Resources and prompts of the manifest below.
  defineCapability(descriptor("mcp.test.artifact"), (payload) => ({ text: `artifact at ${payload.uri}` })),
  defineCapability(
    descriptor("mcp.test.incident-summary", "schema://test/mcp/prompt-input/v1"),
    (payload) => ({
      description: "an incident summary",
      text: `Summarize incident ${payload.incident}`,
    }),
    {
      "schema://test/mcp/prompt-input/v1": {
        type: "object",
        properties: { incident: { type: "string", description: "the incident id" } },
        required: ["incident"],
      },
    },
  ),
];

const MANIFEST = `
version: 0.1
mappings:
  resources:
    - { mcp_uri_pattern: "test://artifact/{id}", mig_capability: mcp.test.artifact, mode: unary, name: artifact }
  prompts:
    - { mcp_name: summarize_incident, mig_capability: mcp.test.incident-summary, mode: unary }
policy: { allow_streaming_tools: true, expose_unmapped_tools: true }
`;

const REVISIONS = [
  { revision: "2025-11-25", negotiation: { mode: "legacy" as const } },
  { revision: "2026-07-28", negotiation: { mode: { pin: "2026-07-28" } } },
];

async function mcpClient(
  url: string,
  negotiation: (typeof REVISIONS)[number]["negotiation"],
  headers: Record<string, string>,
) {
  const client = new Client({ name: "mig-test", version: "1.2.3" }, { versionNegotiation: negotiation });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers } }));
  return client;
}

/** A raw POST to /mcp, as a 2025-11-25 client sends one; an SSE answer is read as its last message. */
async function rawPost(url: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/mcp`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-11-25",
      "x-tenant-id": "acme",
      ...headers,
    },
    body,
  });
  const text = await res.text();
  const data = res.headers.get("content-type")?.startsWith("text/event-stream")
    ? text
        .split("\n")
        .filter((line) => line.startsWith("data: "))
        .at(-1)
        ?.slice(6)
    : text;
  return { status: res.status, headers: res.headers, text, json: data ? (JSON.parse(data) as any) : undefined };
}

/** The same request as the two revisions send it: 2026-07-28 adds the `_meta` envelope and its headers. */
function asRevision(
  revision: string,
  message: { method: string; params?: Record<string, unknown> },
): { headers: Record<string, string>; body: object } {
  if (revision !== "2026-07-28") return { headers: {}, body: message };
  const envelope = {
    "io.modelcontextprotocol/protocolVersion": revision,
    "io.modelcontextprotocol/clientCapabilities": {},
  };
  return {
    headers: { "mcp-protocol-version": revision, "mcp-method": message.method },
    body: { ...message, params: { ...message.params, _meta: envelope } },
  };
}

describe("MCP at /mcp, auth mode none", () => {
  let t: TestRuntime;
  let mcp: McpEndpoint;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities, config: { maxBodyBytes: 16 * 1024 } });
    mcp = mountMcpEndpoint(t.http, t.runtime, t.runtime.authenticator, {
      surface: new McpSurface(parseManifest(MANIFEST)),
    });
  });
  afterAll(async () => {
    await mcp?.close();
    await t?.stop();
  });

  describe.each(REVISIONS)("protocol revision $revision", ({ revision, negotiation }) => {
    let client: Client;
    beforeAll(async () => {
      client = await mcpClient(t.http.url, negotiation, { "x-tenant-id": "acme" });
    });
    afterAll(() => client?.close());

    it("negotiates the revision; initialize (or server/discover) is answered after a HELLO", async () => {
      expect(client.getNegotiatedProtocolVersion()).toBe(revision);
      expect(client.getServerVersion()?.name).toBe("mig-runtime");
      expect(client.getServerCapabilities()).toMatchObject({ tools: {}, resources: {}, prompts: {} });
      expect(client.getInstructions()).toMatch(/^MIG 0\.1, server /);
    });

    it("tools/list shows the capabilities by id, in name order, with their schemas inline", async () => {
      const { tools } = await client.listTools();
      const names = tools.map((tool) => tool.name);
      expect(names).toEqual([...names].sort());
      expect(names).toEqual(["mcp.test.context", "mcp.test.secret", "mcp.test.slow", "observatory.models.infer"]);
      const infer = tools.find((tool) => tool.name === "observatory.models.infer")!;
      expect(infer.inputSchema).toEqual({
        type: "object",
        properties: { input: { type: "string" } },
        required: ["input"],
      });
      expect(infer.outputSchema).toEqual({
        type: "object",
        properties: { result: { type: "string" } },
        required: ["result"],
      });
      expect(infer._meta).toMatchObject({ "mig/capability": "observatory.models.infer", "mig/version": "1.0.0" });
    });

    it("tools/call of observatory.models.infer answers structuredContent and one JSON text block", async () => {
      const result = await client.callTool({ name: "observatory.models.infer", arguments: { input: "health-check" } });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ result: "ok", echo: { input: "health-check" } });
      expect(result.content).toHaveLength(1);
      const [block] = result.content as { type: string; text: string }[];
      expect(block!.type).toBe("text");
      expect(JSON.parse(block!.text)).toEqual(result.structuredContent);
      expect(result._meta?.["mig/message_id"]).toMatch(UUID);
    });

    it("a streaming capability sends one progress notification per frame, then the result", async () => {
      const progress: { progress: number; message?: string }[] = [];
      const result = await client.callTool(
        { name: "observatory.models.infer", arguments: { input: "the quick brown fox" } },
        { onprogress: (p) => progress.push(p) },
      );
      expect(progress.map((p) => p.progress)).toEqual([1, 2, 3, 4]);
      expect(progress.map((p) => JSON.parse(p.message!))).toEqual([
        { token: "the", index: 0 },
        { token: "quick", index: 1 },
        { token: "brown", index: 2 },
        { token: "fox", index: 3 },
      ]);
      expect(result.structuredContent).toEqual({ result: "ok", tokens: 4 });
    });

    it("carries the MCP context into the MIG header: meta keys, traceparent, deadline; never the token", async () => {
      const result = await client.callTool({
        name: "mcp.test.context",
        arguments: {},
        _meta: { traceparent: TRACEPARENT, deadline_ms: 4321 },
      });
      const { header } = result.structuredContent as { header: any };
      expect(header.traceparent).toBe(TRACEPARENT);
      expect(header.deadline_ms).toBe(4321);
      expect(header.tenant_id).toBe("acme");
      expect(header.message_id).toBe(result._meta?.["mig/message_id"]);
      expect(header.meta).toMatchObject({
        "mcp.method": "tools/call",
        "mcp.name": "mcp.test.context",
        "mig.binding": "mcp",
      });
      expect(typeof header.meta["mcp.request_id"]).toBe("string");
      // The 2026-07-28 envelope names the client on every request; a stateless 2025 request does not.
      if (revision === "2026-07-28")
        expect(header.meta).toMatchObject({ "mcp.client_name": "mig-test", "mcp.client_version": "1.2.3" });
    });

    it("cancelling a call cancels its invocation: the provider's signal fires", async () => {
      const tag = `cancel-${revision}`;
      const run = slowRun(tag);
      const stop = new AbortController();
      const call = client.callTool({ name: "mcp.test.slow", arguments: { tag } }, { signal: stop.signal });
      const outcome = call.then(
        () => "resolved",
        () => "rejected",
      );
      await run.started.promise;
      stop.abort("the test stops it");
      const reason = await run.aborted.promise;
      expect(reason.code).toBe("MIG_TIMEOUT");
      expect(reason.details).toMatchObject({ cancelled: true });
      expect(await outcome).toBe("rejected");
      if (revision === "2025-11-25") {
        // The 2025 client keeps the request open and POSTs notifications/cancelled: a CANCEL of the call's message
        // id, found again from the request id (no state in between).
        const [invoked, cancelled] = await waitFor("the audit records of the call and of its CANCEL", async () => {
          const { records } = await t.runtime.readAudit(new URLSearchParams({ tenant: "acme", limit: "100" }));
          const invoke = records.filter((r) => r.operation === "invoke" && r.mcp_name === "mcp.test.slow").at(-1);
          const cancel = records.find((r) => r.operation === "cancel" && r.target === invoke?.message_id);
          return invoke && cancel && [invoke, cancel];
        });
        expect(cancelled).toMatchObject({
          mcp_method: "notifications/cancelled",
          mcp_request_id: invoked.mcp_request_id,
          outcome: "ok",
        });
      }
    });

    it("a call whose arguments fail the input schema is a tool error the model can read", async () => {
      const result = await client.callTool({ name: "observatory.models.infer", arguments: { input: 42 } });
      expect(result.isError).toBe(true);
      const { error } = JSON.parse((result.content as { text: string }[])[0]!.text);
      expect(error.code).toBe("MIG_INVALID_REQUEST");
      expect(error.details.schema_uri).toBe("schema://observatory/models/infer-input/v1");
      expect(result._meta?.["mig/error"]).toMatchObject({ mig_code: "MIG_INVALID_REQUEST", retryable: false });
    });

    it("an unknown tool answers -32602 with the MIG code in data", async () => {
      const error = await client.callTool({ name: "no.such.tool", arguments: {} }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ProtocolError);
      expect((error as ProtocolError).code).toBe(-32602);
      expect((error as ProtocolError).data).toEqual({ mig_code: "MIG_UNSUPPORTED_CAPABILITY", retryable: false });
    });

    it("an unknown method answers -32601", async () => {
      const { headers, body } = asRevision(revision, { method: "mig/no-such-method", params: {} });
      const res = await rawPost(t.http.url, JSON.stringify({ jsonrpc: "2.0", id: 9, ...body }), headers);
      expect(res.json).toMatchObject({ id: 9, error: { code: -32601 } });
    });

    it("resources and prompts come from the manifest", async () => {
      const { resourceTemplates } = await client.listResourceTemplates();
      expect(resourceTemplates).toEqual([{ uriTemplate: "test://artifact/{id}", name: "artifact" }]);
      const read = await client.readResource({ uri: "test://artifact/7" });
      expect(read.contents).toEqual([
        { uri: "test://artifact/7", mimeType: "text/plain", text: "artifact at test://artifact/7" },
      ]);
      const missing = await client.readResource({ uri: "test://nothing/7" }).catch((err: unknown) => err);
      expect((missing as ProtocolError).code).toBe(-32602);

      const { prompts } = await client.listPrompts();
      expect(prompts).toEqual([
        {
          name: "summarize_incident",
          description: "MIG capability mcp.test.incident-summary",
          arguments: [{ name: "incident", description: "the incident id", required: true }],
        },
      ]);
      const prompt = await client.getPrompt({ name: "summarize_incident", arguments: { incident: "INC-9" } });
      expect(prompt.description).toBe("an incident summary");
      expect(prompt.messages).toEqual([{ role: "user", content: { type: "text", text: "Summarize incident INC-9" } }]);
    });
  });

  it("audits every MCP call with the mapping it took: method and name → capability and message id", async () => {
    const client = await mcpClient(t.http.url, REVISIONS[0]!.negotiation, { "x-tenant-id": "acme" });
    try {
      const result = await client.callTool({ name: "observatory.models.infer", arguments: { input: "audit" } });
      await client.callTool({ name: "no.such.tool", arguments: {} }).catch(() => undefined);
      const messageId = result._meta?.["mig/message_id"];
      const { records } = await t.runtime.readAudit(new URLSearchParams({ tenant: "acme", limit: "200" }));
      expect(records.find((r) => r.message_id === messageId)).toMatchObject({
        operation: "invoke",
        target: "observatory.models.infer",
        outcome: "ok",
        mcp_method: "tools/call",
        mcp_name: "observatory.models.infer",
        binding: "http",
      });
      expect(records.filter((r) => r.mcp_name === "no.such.tool").at(-1)).toMatchObject({
        outcome: "error",
        code: "MIG_UNSUPPORTED_CAPABILITY",
        mcp_method: "tools/call",
      });
      expect(records.some((r) => r.operation === "hello" && r.mcp_method === "initialize")).toBe(true);
      expect(records.some((r) => r.operation === "discover" && r.mcp_method === "tools/list")).toBe(true);
    } finally {
      await client.close();
    }
  });

  describe("the raw wire", () => {
    it("a body that is not JSON → 400, -32700", async () => {
      const res = await rawPost(t.http.url, "{not json");
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe(-32700);
      expect(res.json.id).toBeNull();
    });

    it("a JSON body that is not a JSON-RPC message → a JSON-RPC error, nothing runs", async () => {
      const res = await rawPost(t.http.url, JSON.stringify({ jsonrpc: "2.0", id: 1 }));
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.json.error.code).toBeLessThan(-32000);
    });

    it("a batch → 400, -32600 (MCP has no batches since 2025-06-18)", async () => {
      const one = { jsonrpc: "2.0", id: 1, method: "tools/list", params: {} };
      const res = await rawPost(t.http.url, JSON.stringify([one, { ...one, id: 2 }]));
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe(-32600);
    });

    it("a body over the HTTP binding's limit → 413, -32600, with the limit in data", async () => {
      const big = {
        jsonrpc: "2.0",
        id: 3,
        method: "tools/call",
        params: { name: "x", arguments: { pad: "x".repeat(32 * 1024) } },
      };
      const res = await rawPost(t.http.url, JSON.stringify(big));
      expect(res.status).toBe(413);
      expect(res.json.error).toMatchObject({
        code: -32600,
        data: { mig_code: "MIG_INVALID_REQUEST", details: { max_body_bytes: 16 * 1024 } },
      });
    });

    it("a cancellation of a request id nobody used is accepted (202) and changes nothing", async () => {
      const body = { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 424242, reason: "test" } };
      const res = await rawPost(t.http.url, JSON.stringify(body));
      expect(res.status).toBe(202);
      // The notification is acknowledged before its CANCEL has run: wait for the CANCEL's audit record.
      const record = await waitFor("the CANCEL of request 424242", async () => {
        const { records } = await t.runtime.readAudit(new URLSearchParams({ tenant: "acme", limit: "50" }));
        return records.find((r) => r.mcp_method === "notifications/cancelled" && r.mcp_request_id === "424242");
      });
      expect(record).toMatchObject({ operation: "cancel", outcome: "ok" });
      const after = await rawPost(
        t.http.url,
        JSON.stringify({ jsonrpc: "2.0", id: 10, method: "tools/list", params: {} }),
      );
      expect(after.json.result.tools.length).toBeGreaterThan(0);
    });

    it("without X-Tenant-ID (auth mode none) → 400 naming the header", async () => {
      const res = await rawPost(t.http.url, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }), {
        "x-tenant-id": "",
      });
      expect(res.status).toBe(400);
      expect(res.json.error.message).toMatch(/X-Tenant-ID/);
    });
  });
});

describe("MCP at /mcp with two versions of a capability", () => {
  let t: TestRuntime;
  const versioned = (version: string) =>
    defineCapability({ ...descriptor("mcp.test.versioned"), version }, () => ({ served_by: version }));
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities: [versioned("1.4.0"), versioned("2.1.0")] });
    mountMcpEndpoint(t.http, t.runtime, t.runtime.authenticator);
  });
  afterAll(() => t?.stop());

  it('lists one tool per capability; _meta["mig.capability_version"] pins a version or range, as on every binding', async () => {
    const client = await mcpClient(t.http.url, REVISIONS[0]!.negotiation, { "x-tenant-id": "acme" });
    try {
      const { tools } = await client.listTools();
      expect(tools.filter((tool) => tool.name === "mcp.test.versioned")).toHaveLength(1);
      const call = (pin?: string) =>
        client.callTool({
          name: "mcp.test.versioned",
          arguments: {},
          ...(pin === undefined ? {} : { _meta: { "mig.capability_version": pin } }),
        });
      expect((await call()).structuredContent).toEqual({ served_by: "2.1.0" });
      expect((await call("^1.2")).structuredContent).toEqual({ served_by: "1.4.0" });
      expect((await call("2.1.0")).structuredContent).toEqual({ served_by: "2.1.0" });
      // A pin nothing satisfies is MIG_UNSUPPORTED_CAPABILITY, a JSON-RPC error naming the versions there are.
      await expect(call("^3")).rejects.toThrow(/no version matching "\^3".*it has 2\.1\.0, 1\.4\.0/);
    } finally {
      await client.close();
    }
  });
});

describe("MCP at /mcp on a socket near its request cap", () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities, config: { httpMaxRequestsPerSocket: 2 } });
    mountMcpEndpoint(t.http, t.runtime, t.runtime.authenticator);
  });
  afterAll(() => t?.stop());

  it("an SSE answer on a socket's last request closes it, so the next request opens a new socket and is served", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = (id: number) =>
      new Promise<{ status: number; connection: string | undefined; socket: unknown }>((resolve, reject) => {
        const req = request(
          `${t.http.url}/mcp`,
          {
            method: "POST",
            agent,
            headers: {
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
              "mcp-protocol-version": "2025-11-25",
              "x-tenant-id": "acme",
            },
          },
          (res) => {
            res.resume();
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socket: req.socket }),
            );
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify({ jsonrpc: "2.0", id, method: "tools/list", params: {} }));
      });
    try {
      const answers = [];
      for (let id = 1; id <= 5; id++) answers.push(await post(id));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
      // The second request is the socket's last: Node says so, the SDK's keep-alive does not override it.
      expect(answers[1]!.connection).toBe("close");
      expect(answers[2]!.socket).not.toBe(answers[1]!.socket);
    } finally {
      agent.destroy();
    }
  });
});

describe("MCP at /mcp, auth mode jwt", () => {
  const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
  const ISSUER = "https://issuer.example.test";
  let t: TestRuntime;
  let mcp: McpEndpoint;
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().sign(new TextEncoder().encode(SECRET));
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities, config: { authMode: "jwt", jwtHs256Secret: SECRET } });
    mcp = mountMcpEndpoint(t.http, t.runtime, t.runtime.authenticator, { authorizationServers: [ISSUER] });
  });
  afterAll(async () => {
    await mcp?.close();
    await t?.stop();
  });

  it("a request without a token → 401 with WWW-Authenticate naming the protected-resource metadata", async () => {
    const res = await rawPost(t.http.url, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }), {
      "x-tenant-id": "",
    });
    expect(res.status).toBe(401);
    expect(res.json.error).toMatchObject({ code: -32001, data: { mig_code: "MIG_UNAUTHORIZED" } });
    const metadataUrl = `${t.http.url}/.well-known/oauth-protected-resource/mcp`;
    expect(res.headers.get("www-authenticate")).toBe(`Bearer resource_metadata="${metadataUrl}"`);

    const bad = await rawPost(t.http.url, "{}", { authorization: "Bearer not.a.jwt", "x-tenant-id": "" });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("www-authenticate")).toMatch(/^Bearer resource_metadata="[^"]+", error="invalid_token"/);

    for (const path of ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]) {
      const doc = await fetch(`${t.http.url}${path}`);
      expect(doc.status).toBe(200);
      expect(await doc.json()).toEqual({
        resource: `${t.http.url}/mcp`,
        authorization_servers: [ISSUER],
        bearer_methods_supported: ["header"],
        resource_name: "MIG gateway (MCP)",
      });
    }
  });

  describe.each(REVISIONS)("protocol revision $revision", ({ negotiation }) => {
    it("two tenants with different scopes see different tools; one they may not use answers as unknown", async () => {
      const alice = await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer secret:read" });
      const bob = await token({ sub: "bob", tenant_id: "globex", scope: "capability:infer" });
      const acme = await mcpClient(t.http.url, negotiation, { authorization: `Bearer ${alice}` });
      const globex = await mcpClient(t.http.url, negotiation, { authorization: `Bearer ${bob}` });
      try {
        const acmeTools = (await acme.listTools()).tools.map((tool) => tool.name);
        const globexTools = (await globex.listTools()).tools.map((tool) => tool.name);
        expect(acmeTools).toContain("mcp.test.secret");
        expect(globexTools).not.toContain("mcp.test.secret");
        expect(globexTools).toContain("observatory.models.infer");

        const allowed = await acme.callTool({ name: "mcp.test.secret", arguments: {} });
        expect(allowed.structuredContent).toEqual({ secret: "42" });
        // Bob hears exactly what a tool that does not exist answers: nothing tells him it exists.
        const hidden = await globex.callTool({ name: "mcp.test.secret", arguments: {} }).catch((err) => err);
        const missing = await globex.callTool({ name: "mcp.test.nothing", arguments: {} }).catch((err) => err);
        expect(hidden).toBeInstanceOf(ProtocolError);
        expect([hidden.code, hidden.data]).toEqual([missing.code, missing.data]);
        expect(hidden.message.replace("mcp.test.secret", "X")).toBe(missing.message.replace("mcp.test.nothing", "X"));

        // The provider sees the principal, not the token.
        const context = await acme.callTool({ name: "mcp.test.context", arguments: {} });
        expect(context.structuredContent).toMatchObject({ subject: "alice", tenant: "acme" });
        expect(JSON.stringify(context.structuredContent)).not.toContain(alice);
      } finally {
        await acme.close();
        await globex.close();
      }
    });
  });

  it("a token of one tenant naming another in X-Tenant-ID → 403", async () => {
    const alice = await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer" });
    const res = await rawPost(t.http.url, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }), {
      authorization: `Bearer ${alice}`,
      "x-tenant-id": "globex",
    });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatchObject({ code: -32003, data: { mig_code: "MIG_FORBIDDEN" } });
  });
});

describe('the standard\'s Go adapter sends "stream_preference": "" for an unset preference', () => {
  let t: TestRuntime;
  let nats: NatsBinding;
  let nc: NatsConnection;
  beforeAll(async () => {
    t = await startTestRuntime();
    nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
    nc = await natsClient(t.runtime.natsUrl);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.close();
    await t?.stop();
  });

  const body = {
    header: { mig_version: "0.1", tenant_id: "mcp-adapter" },
    capability: "observatory.models.infer",
    payload: { input: "health-check" },
    stream_preference: "",
  };

  it("over HTTP it is a unary INVOKE", async () => {
    const res = await t.post("/mig/v0.1/invoke/observatory.models.infer", body);
    expect(res.status).toBe(200);
    expect(res.body.payload.result).toBe("ok");
  });

  it("over NATS it is a unary INVOKE", async () => {
    const answer = await natsRequest(nc, "mig.v0_1.mcp-adapter.invoke.observatory.models.infer", body);
    expect(answer.body.error).toBeUndefined();
    expect(answer.body.payload.result).toBe("ok");
  });
});
