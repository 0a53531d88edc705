// The direct lane answers only under the gateways' auth settings: a `mig worker` started without them leaves the
// public invoke subjects to the gateways (which refuse bad tokens), one started with them refuses the same
// requests itself, and a gateway with other settings joining the fleet closes the lane until it leaves.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { readCredentialsFile, runtimeCredentialsFile } from "../runtime/bus/bus-credentials.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { scopedEcho } from "./fixtures/scoped-provider.ts";
import { natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { startTestRuntime, waitFor } from "./helpers/runtime.ts";

const FIXTURE = "test/fixtures/scoped-provider.ts";
const SECRET = "direct-lane-test-secret-of-the-gateways";
const JWT_ENV = { MIG_AUTH_MODE: "jwt", MIG_JWT_HS256_SECRET: SECRET };
const processes: MigProcess[] = [];

let gateway: MigProcess;
let busUrl: string;
let nc: NatsConnection;
/** A jwt-mode gateway's embedded bus has users: the file a worker with its data directory would read. */
let credentialsFile: string | undefined;
let busUser: { user: string; password: string } | undefined;

async function token(claims: Record<string, unknown>, expiresInS = 300, secret = SECRET): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt(now)
    .setExpirationTime(now + expiresInS)
    .sign(new TextEncoder().encode(secret));
}

const GOOD = { sub: "alice", tenant_id: "acme", scope: "echo:run" };

/** The requests every binding must refuse, each with the code a gateway answers. */
async function refusals(): Promise<[string, Record<string, string>, string][]> {
  return [
    ["no token", {}, "MIG_UNAUTHORIZED"],
    ["an expired token", { Authorization: `Bearer ${await token(GOOD, -600)}` }, "MIG_UNAUTHORIZED"],
    [
      "a token signed with another secret",
      { Authorization: `Bearer ${await token(GOOD, 300, "not-the-secret")}` },
      "MIG_UNAUTHORIZED",
    ],
    [
      "another tenant's token",
      { Authorization: `Bearer ${await token({ ...GOOD, tenant_id: "globex" })}` },
      "MIG_FORBIDDEN",
    ],
    [
      "a token without the capability's scope",
      { Authorization: `Bearer ${await token({ ...GOOD, scope: "something:else" })}` },
      "MIG_FORBIDDEN",
    ],
  ];
}

function invoke(headers: Record<string, string>, payload: unknown = {}, timeout = 10_000) {
  return natsRequest(
    nc,
    "mig.v0_1.acme.invoke.scoped.echo",
    { header: { tenant_id: "acme" }, payload },
    headers,
    timeout,
  );
}

function worker(name: string, env: Record<string, string> = {}): MigProcess {
  const child = startMig(["worker", FIXTURE], {
    MIG_NATS_URL: busUrl,
    WORKER_NAME: name,
    ...(credentialsFile ? { MIG_NATS_CREDENTIALS: credentialsFile } : {}),
    ...env,
  });
  processes.push(child);
  return child;
}

/** Pauses the gateway process (its nats-server runs in a process group of its own) while `body` runs. */
async function withGatewayPaused<T>(body: () => Promise<T>): Promise<T> {
  process.kill(gateway.child.pid!, "SIGSTOP");
  try {
    return await body();
  } finally {
    process.kill(gateway.child.pid!, "SIGCONT");
  }
}

const lines = (p: MigProcess, text: string) => p.logs.filter((l) => String(l.msg).includes(text));

beforeAll(async () => {
  ({ gateway, busUrl } = await startGateway(JWT_ENV));
  processes.push(gateway);
  const file = runtimeCredentialsFile(gateway.dataDir);
  if (existsSync(file)) {
    credentialsFile = file;
    busUser = readCredentialsFile(file);
  }
  nc = await connect({
    servers: busUrl,
    name: "direct-lane-auth-test",
    ...(busUser ? { user: busUser.user, pass: busUser.password } : {}),
  });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
});

describe("the direct lane under the gateways' auth settings", () => {
  let gatewayRefusals: Map<string, { code: string; message: string }>;

  it("a worker started without auth settings does not answer the public subjects: the gateway refuses bad tokens", async () => {
    const plain = worker("plain");
    await plain.waitForLog("worker serving");
    const good = { Authorization: `Bearer ${await token(GOOD)}` };
    await waitFor(
      "the gateway to dispatch to the worker",
      async () => (await invoke(good, {}, 3_000).catch(() => undefined))?.body.payload?.served_by === "plain",
      20_000,
    );
    // The worker has decided about its lane: a worker that opened one says so about a second after it registered.
    await waitFor(
      "the worker's lane decision",
      () => lines(plain, "direct lane off").length > 0 || lines(plain, "direct lane answering").length > 0,
      20_000,
    );
    await new Promise((r) => setTimeout(r, 1_500)); // past any switch instant (1 s) the worker might have named

    gatewayRefusals = new Map();
    for (const [name, headers, code] of await refusals()) {
      const answer = await invoke(headers, { attempt: name });
      expect(answer.body.error?.code, `${name}: ${JSON.stringify(answer.body)}`).toBe(code);
      expect(answer.headers.mig_error_code).toBe(code);
      gatewayRefusals.set(name, { code, message: answer.body.error.message });
    }
    expect((await invoke(good, { ok: 1 })).body.payload).toEqual({
      served_by: "plain",
      subject: "alice",
      echo: { ok: 1 },
    });

    // Nothing answers the public subject but the gateway: paused, nobody does.
    const paused = await withGatewayPaused(() =>
      invoke({}, {}, 1_500).then(
        (a) => `answered ${JSON.stringify(a.body)}`,
        () => "no answer",
      ),
    );
    expect(paused).toBe("no answer");
    const off = lines(plain, "direct lane off")[0]!;
    expect(String(off.msg)).toContain("start it with the same MIG_AUTH_MODE and MIG_JWT_* settings");
    expect((off.differing as { settings: string[] }[])[0]!.settings).toContain("MIG_AUTH_MODE");
    expect(lines(plain, "direct lane answering")).toHaveLength(0);
  }, 60_000);

  it("a worker started with the gateways' settings opens its lane and gives the same refusals itself", async () => {
    const same = worker("same", JWT_ENV);
    await same.waitForLog("direct lane answering NATS invokes", 20_000);
    const good = { Authorization: `Bearer ${await token(GOOD)}` };
    const cases = await refusals();
    // With the gateway paused, every answer comes from the worker's direct lane.
    const answers = await withGatewayPaused(async () => {
      const refused = await Promise.all(cases.map(([name, headers]) => invoke(headers, { attempt: name }, 5_000)));
      return { refused, served: await invoke(good, { direct: true }, 5_000) };
    });
    cases.forEach(([name, , code], i) => {
      const answer = answers.refused[i]!;
      expect(answer.body.error?.code, `${name}: ${JSON.stringify(answer.body)}`).toBe(code);
      expect(answer.headers.mig_error_code).toBe(code);
      expect(answer.body.error.message, name).toBe(gatewayRefusals.get(name)!.message);
    });
    expect(answers.served.body.payload).toEqual({ served_by: "same", subject: "alice", echo: { direct: true } });
  }, 60_000);

  it("closes the lane while a gateway with other settings serves, and opens it again when that gateway leaves", async () => {
    const same = processes.find((p) => lines(p, "direct lane answering").length > 0 && p !== gateway)!;
    const config = loadConfig(
      {
        natsUrl: busUrl,
        natsUser: busUser?.user,
        natsPassword: busUser?.password,
        dataDir: mkdtempSync(join(tmpdir(), "mig-other-gw-")),
        logLevel: "silent",
        authMode: "jwt",
        jwtHs256Secret: "another-secret",
      },
      {},
    );
    const other = await MigRuntime.start(config, { logger: createLogger("silent") });
    try {
      const binding = await startNatsBinding(other, other.authenticator);
      await waitFor("the worker to close its lane", () => lines(same, "direct lane off").length > 0, 20_000);
      const off = lines(same, "direct lane off")[0]!;
      expect((off.differing as { settings: string[] }[]).map((d) => d.settings)).toEqual([["MIG_JWT_HS256_SECRET"]]);
      await binding.close();
      await waitFor(
        "the worker to open its lane again",
        () => lines(same, "direct lane answering").length >= 2,
        20_000,
      );
    } finally {
      await other.stop();
    }
  }, 60_000);

  it("with no gateway serving the public subjects yet, no lane: it opens when the first gateway publishes its settings", async () => {
    const bus = await startTestRuntime(); // a runtime without the NATS binding: it answers no public subject
    const config = loadConfig({ natsUrl: bus.runtime.natsUrl, dataDir: bus.dataDir, logLevel: "silent" }, {});
    const workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent") });
    const host = await WorkerHost.start(workerRuntime, [scopedEcho], { heartbeatMs: 500 });
    try {
      await waitFor("the registration", () => bus.runtime.capabilities.get("scoped.echo"));
      expect(bus.runtime.capabilities.directSince("scoped.echo")).toBeUndefined();
      expect(workerRuntime.fleet!.gatewayPolicies()).toEqual([]);
      const binding = await startNatsBinding(bus.runtime, bus.runtime.authenticator);
      await waitFor(
        "the worker's switch to reach the gateway",
        () => bus.runtime.capabilities.directSince("scoped.echo") !== undefined,
        20_000,
      );
      await binding.close();
    } finally {
      await host.stop();
      await workerRuntime.stop();
      await bus.stop();
    }
  }, 60_000);
});
