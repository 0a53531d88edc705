// The conformance harness against this runtime with its fixtures (mig.fixture.*), over HTTP, NATS, gRPC and MCP
// (/mcp), profile full: in auth mode none every check passes or SKIPs for a listed reason; in auth mode jwt with two tokens every
// check passes. And the checks that need a real server's behaviour fail or take their other branch where they should.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type McpEndpoint, mountMcpEndpoint } from "../bindings/mcp/http-endpoint.ts";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { runConformance } from "../conformance/harness.ts";
import type { CheckResult, ConformanceOptions } from "../conformance/types.ts";
import type { RuntimeConfig } from "../runtime/base/config.ts";
import { demoFixtures, FIXTURE_SCOPE } from "../runtime/provider/demo-provider.ts";
import { ROOT } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";

/** The SKIPs a full run against this runtime in auth mode none keeps, and why. */
const SKIPS_IN_AUTH_MODE_NONE: Record<string, RegExp> = {
  // Every caller sees every capability in auth mode none: scoped DISCOVER needs two tokens (auth mode jwt, below).
  "CORE-2.http.discover-scoped": /needs --token and --limited-token/,
  "MCP-2.mcp.tools-scoped": /needs --token and --limited-token/,
};

/** Every checklist item but GRPC-1 (the proto compiles: test/schemas.test.ts). */
const ITEMS_WITH_A_PASSING_CHECK = [
  ...["CORE-1", "CORE-2", "CORE-3", "CORE-4", "CORE-5", "CORE-6"],
  ...["STREAM-1", "STREAM-2", "STREAM-3", "STREAM-4"],
  ...["EVENT-1", "EVENT-2", "EVENT-3", "EVENT-4"],
  ...["FULL-1", "FULL-2", "FULL-3", "FULL-4"],
  ...["GRPC-2", "NATS-1", "NATS-2", "NATS-3", "HTTP-1"],
  ...["MCP-1", "MCP-2", "MCP-3", "MCP-4", "MCP-5", "MCP-6"],
].sort();

function token(sub: string, scope: string): Promise<string> {
  return new SignJWT({ sub, tenant_id: "acme", scope })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
}

interface Served {
  t: TestRuntime;
  nats: NatsBinding;
  events: NatsEventsBinding;
  grpc: GrpcBinding;
  mcp: McpEndpoint;
  /** The bus URL, with the runtime's bus user in it when the bus has users (auth mode jwt). */
  natsUrl: string;
}

/** This runtime as `mig start` runs it (HTTP with /mcp, NATS, gRPC), with the conformance fixtures, on random ports. */
async function serve(config: Partial<RuntimeConfig> = {}): Promise<Served> {
  const t = await startTestRuntime({ capabilities: demoFixtures(), config });
  const nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  const events = startNatsEvents(t.runtime, t.runtime.authenticator);
  const grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  const mcp = mountMcpEndpoint(t.http, t.runtime, t.runtime.authenticator);
  const url = new URL(t.runtime.natsUrl);
  const { user, password } = t.runtime.busCredentials;
  if (user) {
    url.username = user;
    url.password = password ?? "";
  }
  return { t, nats, events, grpc, mcp, natsUrl: url.toString() };
}

async function stop(served: Served | undefined): Promise<void> {
  if (!served) return;
  await served.grpc.close();
  await served.mcp.close();
  await served.events.close();
  await served.nats.close();
  await served.t.stop();
}

function everywhere(served: Served): ConformanceOptions {
  return {
    http: served.t.http.url,
    nats: served.natsUrl,
    grpc: served.grpc.address,
    mcp: `${served.t.http.url}/mcp`,
    tenant: "acme",
  };
}

const line = (r: CheckResult) =>
  `${r.status} ${r.convention ? "[convention] " : ""}${r.id}${r.reason ? `: ${r.reason}` : ""}`;
const itemsPassed = (results: CheckResult[]) =>
  [...new Set(results.filter((r) => r.status === "pass").map((r) => r.item))].sort();

describe("auth mode none (npm start)", () => {
  let served: Served;
  beforeAll(async () => {
    served = await serve();
  });
  afterAll(() => stop(served));

  it("profile full over HTTP, NATS, gRPC and MCP: every check passes, or SKIPs for a listed reason", async () => {
    const report = await runConformance({ ...everywhere(served), profile: "full" });
    const unexpected = report.results.filter(
      (r) => r.status === "fail" || (r.status === "skip" && !SKIPS_IN_AUTH_MODE_NONE[r.id]?.test(r.reason ?? "")),
    );
    expect(unexpected.map(line)).toEqual([]);
    expect(report.skipped).toBe(Object.keys(SKIPS_IN_AUTH_MODE_NONE).length);
    expect(report.conventions).toEqual({ passed: expect.any(Number), failed: 0, skipped: 0 });
    expect(itemsPassed(report.results)).toEqual(ITEMS_WITH_A_PASSING_CHECK);
    // The fixture checks ran and saw the work stop (their notes come from the probe fixture).
    const note = (id: string) => report.results.find((r) => r.id === id)?.reason ?? "";
    expect(note("CORE-4.http.cancel-in-flight")).toMatch(/provider was aborted with MIG_TIMEOUT/);
    expect(note("CORE-4.grpc.cancel-in-flight")).toMatch(/provider was aborted with MIG_TIMEOUT/);
    expect(note("STREAM-3.http.backpressure")).toMatch(/the provider was held after \d+ of 40000 frames/);
    expect(note("STREAM-4.http.stream-deadline")).toMatch(/^MIG_TIMEOUT after \d+ frames; provider aborted/);
    expect(note("NATS-3.nats.jetstream-replay")).toBe("resumed exactly after sequence 3");
    expect(note("MCP-6.mcp.cancel-in-flight")).toMatch(/provider was aborted with MIG_TIMEOUT/);
    expect(note("MCP-5.mcp.audit-correlation")).toMatch(/^request conformance-\S+-trace → message \S+, trace/);
  }, 120_000);

  it("with two tokens, scoped DISCOVER and tools/list fail: auth mode none shows the scoped fixture to a token without its scope", async () => {
    const report = await runConformance({
      http: served.t.http.url,
      mcp: `${served.t.http.url}/mcp`,
      tenant: "acme",
      token: await token("full", `capability:infer ${FIXTURE_SCOPE}`),
      limitedToken: await token("limited", "capability:infer"),
      profile: "full",
      only: ["CORE-2.http.discover-scoped", "MCP-2.mcp.tools-scoped"],
    });
    expect(report.results.map(line)).toEqual([
      expect.stringMatching(
        /^fail CORE-2\.http\.discover-scoped: DISCOVER with --limited-token \(scopes: capability:infer\) lists mig\.fixture\.scoped \(needs fixture:scoped\)$/,
      ),
      "fail MCP-2.mcp.tools-scoped: tools/list with --limited-token (scopes: capability:infer) shows mig.fixture.scoped",
    ]);
    expect(report.failed).toBe(2);
  });
});

describe("auth mode jwt, two tokens", () => {
  let served: Served;
  let full: string;
  let limited: string;
  beforeAll(async () => {
    served = await serve({ authMode: "jwt", jwtHs256Secret: SECRET });
    // The global admin scope reads /metrics, the tenant's admin scope its audit records.
    full = await token("conformance", `capability:infer ${FIXTURE_SCOPE} mig:admin mig:admin:global`);
    limited = await token("limited", "capability:infer");
  });
  afterAll(() => stop(served));

  it("profile full over HTTP, NATS, gRPC and MCP: every check passes, conventions included", async () => {
    const report = await runConformance({ ...everywhere(served), token: full, limitedToken: limited, profile: "full" });
    expect(report.results.filter((r) => r.status !== "pass").map(line)).toEqual([]);
    expect(report.results.find((r) => r.id === "CORE-2.http.discover-scoped")?.reason).toBe(
      "hidden from --limited-token: mig.fixture.scoped; 4 shown to both",
    );
    expect(report.results.find((r) => r.id === "FULL-3.http.audit-log")?.reason).toBe(
      "GET /admin/v0.1/audit: actor conformance, outcome ok",
    );
    expect(report.results.find((r) => r.id === "MCP-2.mcp.tools-scoped")?.reason).toMatch(
      /^hidden from --limited-token: mig\.fixture\.scoped; \d+ tools shown to both$/,
    );
  }, 120_000);

  it("the command line marks a failed convention check and exits 0: it does not count toward the profile", async () => {
    const tenantAdmin = await token("conformance", "capability:infer mig:admin");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        ...["cli/mig.mjs", "conformance", served.t.http.url, "--token", tenantAdmin],
        ...["--profile", "full", "--only", "FULL-2", "FULL-4.http"],
      ],
      { cwd: ROOT },
    );
    const lines = stdout.trim().split("\n");
    // The checks' lines, then the table of checklist items, then the verdict.
    expect(lines.slice(0, 2)).toEqual([
      expect.stringMatching(/^PASS FULL-4\.http\.heartbeat-ack: /),
      expect.stringMatching(/^FAIL \[convention\] FULL-2\.http\.metrics: .* — GET \/metrics answered 403/),
    ]);
    expect(lines.slice(2, -1).map((line) => line.split(/\s+/).slice(0, 2))).toEqual([
      ["ITEM", "RESULT"],
      ["FULL-2", "-"],
      ["FULL-4", "PASS"],
    ]);
    expect(lines.at(-1)).toEqual(
      expect.stringMatching(
        /^OK: full profile, 1 passed, 0 failed, 0 skipped against http:\/\/\S+; conventions \(not counted\): 0 passed, 1 failed, 0 skipped$/,
      ),
    );
  });
});

describe("a consumer that stalls past MIG_STREAM_STALL_MS", () => {
  let t: TestRuntime;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities: demoFixtures(), config: { streamStallMs: 300 } });
  });
  afterAll(() => t?.stop());

  it("STREAM-3 sees the stream end with MIG_BACKPRESSURE instead of a held provider", async () => {
    const report = await runConformance({ http: t.http.url, tenant: "acme", profile: "streaming", only: ["STREAM-3"] });
    expect(report.results.map(line)).toEqual([
      expect.stringMatching(
        /^pass STREAM-3\.http\.backpressure: the stream ended with MIG_BACKPRESSURE after \d+ frames$/,
      ),
    ]);
  });
});
