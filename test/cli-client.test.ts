// The `mig` client commands as a user runs them: the real binary, as a child process, against a real runtime over
// HTTP, NATS and gRPC; readable output, --json for scripts, and an exit status that names the MIG code.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { startNatsEvents } from "../bindings/nats/events.ts";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { ROOT } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mig <args>` to its end; `input` is written to its standard input. */
function mig(args: string[], input?: string): Promise<Ran> {
  const env = { ...process.env };
  for (const name of ["MIG_URL", "MIG_TENANT", "MIG_TOKEN"]) delete env[name];
  const child = spawn(process.execPath, [join(ROOT, "cli/mig.mjs"), ...args], { cwd: ROOT, env });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.stdin.end(input);
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

let rt: TestRuntime;
let grpc: GrpcBinding;
let http: string;
const closers: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  rt = await startTestRuntime();
  const nats = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
  const events = startNatsEvents(rt.runtime, rt.runtime.authenticator);
  grpc = await startGrpcBinding(rt.runtime, rt.runtime.authenticator, "127.0.0.1:0");
  closers.push(
    () => grpc.close(0),
    () => events.close(),
    () => nats.close(),
  );
  http = rt.http.url;
});

afterAll(async () => {
  for (const close of closers) await close();
  await rt?.stop();
});

describe("mig client commands", () => {
  it("hello, discover, invoke and heartbeat print readable answers", async () => {
    const hello = await mig(["hello", "--url", http, "--tenant", "acme"]);
    expect(hello.stderr).toBe("");
    expect(hello.code).toBe(0);
    expect(hello.stdout).toMatch(/: MIG 0\.1 over http/);

    const discover = await mig(["discover", "--url", http, "--tenant", "acme"]);
    expect(discover.code).toBe(0);
    const lines = discover.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^CAPABILITY\s+VERSION\s+MODES\s+SCOPES$/);
    expect(lines.some((line) => line.startsWith("observatory.models.infer"))).toBe(true);

    const invoke = await mig([
      "invoke",
      "observatory.models.infer",
      "--data",
      '{"input":"hello"}',
      "--url",
      http,
      "--tenant",
      "acme",
    ]);
    expect(invoke.code).toBe(0);
    expect(JSON.parse(invoke.stdout)).toEqual(expect.objectContaining({ result: "ok", echo: { input: "hello" } }));

    const heartbeat = await mig(["heartbeat", "--url", http, "--tenant", "acme"]);
    expect(heartbeat.code).toBe(0);
    expect(heartbeat.stdout).toMatch(/^beat every \d+ ms; load [\d.]+\n$/);
  });

  it("--json prints whole answers for scripts, and takes the payload from a file or standard input", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mig-cli-"));
    const file = join(dir, "payload.json");
    writeFileSync(file, '{"input":"from a file"}');
    const fromFile = await mig([
      "invoke",
      "observatory.models.infer",
      "--data",
      `@${file}`,
      "--json",
      "--url",
      http,
      "--tenant",
      "acme",
    ]);
    expect(fromFile.code).toBe(0);
    const answer = JSON.parse(fromFile.stdout);
    expect(answer.capability).toBe("observatory.models.infer");
    expect(answer.header.tenant_id).toBe("acme");

    const fromStdin = await mig(
      ["invoke", "observatory.models.infer", "--data", "-", "--json", "--url", http, "--tenant", "acme"],
      '{"input":"from stdin"}',
    );
    expect(fromStdin.code).toBe(0);
    expect(JSON.parse(fromStdin.stdout).capability).toBe("observatory.models.infer");

    const discover = await mig(["discover", "--json", "--url", http, "--tenant", "acme"]);
    expect(JSON.parse(discover.stdout).capabilities.map((c: { id: string }) => c.id)).toContain(
      "observatory.models.infer",
    );
  });

  it("stream prints each frame as it arrives, then the result", async () => {
    const ran = await mig([
      "stream",
      "observatory.models.infer",
      "--data",
      '{"input":"one two three"}',
      "--url",
      http,
      "--tenant",
      "acme",
    ]);
    expect(ran.stderr).toBe("");
    expect(ran.code).toBe(0);
    const lines = ran.stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(4);
    expect(lines.at(-1)).toMatch(/^result \{/);
  });

  it("publish, then subscribe from the first event; cancel answers for an unknown message", async () => {
    const topic = `cli.orders-${Date.now()}`;
    for (const n of [1, 2]) {
      const published = await mig([
        "publish",
        topic,
        "--data",
        `{"n":${n}}`,
        "--key",
        "k",
        "--url",
        http,
        "--tenant",
        "acme",
      ]);
      expect(published.code).toBe(0);
      expect(published.stdout).toMatch(new RegExp(`^${topic.replace(".", "\\.")} #${n} `));
    }
    const subscribed = await mig([
      "subscribe",
      topic,
      "--from",
      "0",
      "--count",
      "2",
      "--json",
      "--url",
      http,
      "--tenant",
      "acme",
    ]);
    expect(subscribed.code).toBe(0);
    const events = subscribed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events.map((e) => [e.sequence, e.payload.n, e.replay])).toEqual([
      [1, 1, true],
      [2, 2, true],
    ]);

    const cancelled = await mig(["cancel", "8d5c3f43-5a6e-4d8e-9f5c-1b2a3c4d5e6f", "--url", http, "--tenant", "acme"]);
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toBe("8d5c3f43-5a6e-4d8e-9f5c-1b2a3c4d5e6f: not_found\n");
  });

  it("speaks NATS and gRPC with the same commands", async () => {
    const overNats = await mig(["hello", "--url", rt.runtime.natsUrl, "--tenant", "acme"]);
    expect(overNats.stderr).toBe("");
    expect(overNats.stdout).toMatch(/MIG 0\.1 over nats/);
    const overGrpc = await mig([
      "invoke",
      "observatory.models.infer",
      "--data",
      '{"input":"hi"}',
      "--json",
      "--url",
      `grpc://${grpc.address}`,
      "--tenant",
      "acme",
    ]);
    expect(overGrpc.stderr).toBe("");
    expect(JSON.parse(overGrpc.stdout).capability).toBe("observatory.models.infer");
  });

  it("prints a failure as one sentence and exits with the status of its MIG code", async () => {
    const unknown = await mig(["invoke", "no.such.capability", "--url", http, "--tenant", "acme"]);
    expect(unknown.code).toBe(14);
    expect(unknown.stdout).toBe("");
    expect(unknown.stderr).toMatch(/^mig invoke: MIG_UNSUPPORTED_CAPABILITY: .+\n$/);

    const badData = await mig([
      "invoke",
      "observatory.models.infer",
      "--data",
      "{not json",
      "--url",
      http,
      "--tenant",
      "acme",
    ]);
    expect(badData.code).toBe(10);
    expect(badData.stderr).toMatch(/--data is not JSON/);

    const noTenant = await mig(["hello", "--url", http]);
    expect(noTenant.code).toBe(10);
    expect(noTenant.stderr).toMatch(/tenant/);

    const nobody = await mig(["hello", "--url", "http://127.0.0.1:1", "--tenant", "acme", "--timeout", "3000"]);
    expect(nobody.code).toBe(19);
    expect(nobody.stderr).toMatch(/MIG_UNAVAILABLE: could not reach the MIG server at http:\/\/127\.0\.0\.1:1/);

    const badScheme = await mig(["hello", "--url", "ftp://example", "--tenant", "acme"]);
    expect(badScheme.code).toBe(10);
  });
});
