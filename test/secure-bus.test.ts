// The bus in auth mode jwt: the embedded bus has generated users and no anonymous access, workers join with the
// credentials file, callers exchange a token for their tenant's bus user, and an open bus is refused.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { natsRequest } from "./helpers/nats.ts";
import { type MigProcess, ROOT, startGateway, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const SECRET = "secure-bus-test-secret-0123456789abcdef";
const INFER = "observatory.models.infer";

function token(tenant: string, subject = "alice"): Promise<string> {
  return new SignJWT({ tenant_id: tenant, scope: "capability:infer" })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(subject)
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
}

/** Subscribes and reports the server's verdict: the server answers SUB before PONG, so a refusal has closed it by then. */
async function refusedSubscribe(nc: NatsConnection, subject: string): Promise<boolean> {
  const sub = nc.subscribe(subject);
  await nc.flush();
  const refused = sub.isClosed();
  if (!refused) sub.unsubscribe();
  return refused;
}

function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}

describe("the embedded bus in jwt mode", () => {
  let t: TestRuntime;
  let binding: NatsBinding;
  const clients: NatsConnection[] = [];
  let runtimeReconnects = 0;

  beforeAll(async () => {
    t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
    binding = await startNatsBinding(t.runtime, t.runtime.authenticator);
    t.runtime.bus.onReconnect.add(() => runtimeReconnects++);
  });
  afterAll(async () => {
    for (const nc of clients) await nc.close().catch(() => undefined);
    await binding?.close();
    await t?.stop();
  });

  async function credentialsFor(authorization: string | undefined): Promise<{ status: number; body: any }> {
    return t.post("/mig/v0.1/nats/credentials", {}, authorization ? { authorization } : {});
  }

  it("refuses an anonymous client, so nobody can subscribe to globex's subjects without a credential", async () => {
    await expect(connect({ servers: t.runtime.natsUrl, reconnect: false })).rejects.toThrow(/authorization violation/i);
    // A client that sends a user and password it guessed fares no better.
    await expect(
      connect({ servers: t.runtime.natsUrl, user: "tenant-globex", pass: "guess", reconnect: false }),
    ).rejects.toThrow(/authorization violation/i);
  });

  it("keeps the generated configuration and credentials readable by their owner only", () => {
    const dir = join(t.dataDir, "credentials");
    expect(modeOf(dir)).toBe("700");
    for (const file of ["runtime.json", "provider.json", "tenants.json", "nats-server.conf"])
      expect(modeOf(join(dir, file)), file).toBe("600");
    const runtimeFile = JSON.parse(readFileSync(join(dir, "runtime.json"), "utf8"));
    expect(runtimeFile).toEqual({
      url: t.runtime.natsUrl,
      user: "runtime",
      password: expect.stringMatching(/^[A-Za-z0-9_-]{32}$/),
    });
    expect(readFileSync(join(dir, "nats-server.conf"), "utf8")).not.toMatch(/no_auth_user/);
  });

  it("gives a caller with only an acme token acme's bus user: it invokes over the NATS binding and reads nothing of globex", async () => {
    const acmeToken = await token("acme");
    const issued = await credentialsFor(`Bearer ${acmeToken}`);
    expect(issued.status).toBe(200);
    expect(issued.body).toEqual({
      url: t.runtime.natsUrl,
      user: "tenant-acme",
      password: expect.any(String),
      inbox_prefix: "_INBOX_acme",
    });
    const again = await credentialsFor(`Bearer ${await token("acme", "bob")}`);
    expect(again.body).toEqual(issued.body);

    const nc = await connect({
      servers: issued.body.url,
      user: issued.body.user,
      pass: issued.body.password,
      inboxPrefix: issued.body.inbox_prefix,
    });
    clients.push(nc);
    const violations: string[] = [];
    void (async () => {
      for await (const status of nc.status())
        if (status.type === "error") violations.push(String(status.error.message));
    })();
    const answer = await natsRequest(
      nc,
      `mig.v0_1.acme.invoke.${INFER}`,
      { header: { message_id: randomUUID() }, payload: { input: "x" } },
      { Authorization: `Bearer ${acmeToken}` },
    );
    expect(answer.body.payload.result).toBe("ok");

    for (const subject of [
      "mig.v0_1.globex.>",
      "mig.v0_1.>",
      "_INBOX.>",
      "_INBOX_globex.>",
      "mig.v0_1.acme.invoke.>",
      "_MIG.>",
    ]) {
      expect(await refusedSubscribe(nc, subject), subject).toBe(true);
    }
    expect(await refusedSubscribe(nc, "mig.v0_1.acme.events.>")).toBe(false);
    // Publishing for globex, or a frame of a stream (the runtime's and providers' to send), is refused too.
    nc.publish("mig.v0_1.globex.hello", "{}");
    nc.publish("mig.v0_1.acme.stream.s-1", "{}");
    await nc.flush();
    await waitFor("both publish refusals", () =>
      ["mig.v0_1.globex.hello", "mig.v0_1.acme.stream.s-1"].every((s) =>
        violations.some((v) => /publish/i.test(v) && v.includes(s)),
      ),
    );
  });

  it("adds a second tenant's user without dropping any connection", async () => {
    const acme = await credentialsFor(`Bearer ${await token("acme")}`);
    const nc = await connect({
      servers: acme.body.url,
      user: acme.body.user,
      pass: acme.body.password,
      inboxPrefix: acme.body.inbox_prefix,
    });
    clients.push(nc);
    let acmeReconnects = 0;
    void (async () => {
      for await (const status of nc.status())
        if (status.type === "reconnect" || status.type === "disconnect") acmeReconnects++;
    })();
    const globex = await credentialsFor(`Bearer ${await token("globex")}`);
    expect(globex.body.user).toBe("tenant-globex");
    expect(globex.body.password).not.toBe(acme.body.password);
    const other = await connect({
      servers: globex.body.url,
      user: globex.body.user,
      pass: globex.body.password,
      inboxPrefix: globex.body.inbox_prefix,
    });
    clients.push(other);
    expect(await refusedSubscribe(other, "mig.v0_1.acme.>")).toBe(true);
    const answer = await natsRequest(
      nc,
      `mig.v0_1.acme.invoke.${INFER}`,
      { payload: { input: "y" } },
      { Authorization: `Bearer ${await token("acme")}` },
    );
    expect(answer.body.payload.result).toBe("ok");
    expect(acmeReconnects).toBe(0);
    expect(runtimeReconnects).toBe(0);
  });

  it("answers a request without a token 401 and keeps the providers' inbox from any tenant", async () => {
    const none = await credentialsFor(undefined);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe("MIG_UNAUTHORIZED");
    const provider = await credentialsFor(`Bearer ${await token("provider")}`);
    expect(provider.status).toBe(403);
    expect(provider.body.error.code).toBe("MIG_FORBIDDEN");
    const other = await t.post("/mig/v0.1/nats/keys", {}, { authorization: `Bearer ${await token("acme")}` });
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe("MIG_NOT_FOUND");
  });
});

describe("the generated users across a restart", () => {
  it("keeps every password of the data directory, so workers and callers reconnect with what they hold", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "mig-secure-restart-"));
    const config = loadConfig(
      { authMode: "jwt", jwtHs256Secret: SECRET, dataDir, natsPort: 0, natsMonitorPort: 0, logLevel: "silent" },
      {},
    );
    try {
      const first = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
      const acme = await first.busUsers!.tenantCredentials("acme");
      const runtimeFile = readFileSync(join(dataDir, "credentials", "runtime.json"), "utf8");
      await first.stop();

      const second = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
      try {
        expect(JSON.parse(readFileSync(join(dataDir, "credentials", "runtime.json"), "utf8")).password).toBe(
          JSON.parse(runtimeFile).password,
        );
        // The tenant's user is in the configuration the server starts with: no reload needed, same password.
        const nc = await connect({ servers: second.natsUrl, user: acme.user, pass: acme.password, reconnect: false });
        await nc.close();
        expect(await second.busUsers!.tenantCredentials("acme")).toEqual({ ...acme, url: second.natsUrl });
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a gateway and a worker in jwt mode", () => {
  const processes: MigProcess[] = [];
  afterAll(async () => {
    for (const p of processes.reverse()) await p.stop();
  });

  it("a mig worker given the gateway's data directory joins with the credentials file and serves an invoke", async () => {
    const { gateway, httpUrl, busUrl } = await startGateway({ MIG_AUTH_MODE: "jwt", MIG_JWT_HS256_SECRET: SECRET });
    processes.push(gateway);
    const dataDir = gateway.dataDir;
    const security = await gateway.waitForLog("bus security");
    expect(security.runtime_credentials).toBe(join(dataDir, "credentials", "runtime.json"));

    // With the URL alone (another data directory, no credential), the bus refuses it and it says what to give it.
    const stranger = startMig(["worker", "test/fixtures/fleet-provider.ts"], { MIG_NATS_URL: busUrl });
    processes.push(stranger);
    expect(await stranger.exited).toBe(1);
    expect(stranger.stderr()).toContain("refused this runtime's credential");
    expect(stranger.stderr()).toContain("MIG_NATS_CREDENTIALS=<file>");

    const worker = startMig(["worker", "test/fixtures/fleet-provider.ts"], {
      MIG_DATA_DIR: dataDir,
      WORKER_NAME: "secure-worker",
      MIG_PROVIDER_HEARTBEAT_MS: "500",
    });
    processes.push(worker);
    const serving = await worker.waitForLog("worker serving");
    expect(serving.url).toBe(JSON.parse(readFileSync(join(dataDir, "credentials", "runtime.json"), "utf8")).url);

    const authorization = `Bearer ${await token("acme")}`;
    const answer = await waitFor("the worker's capability to be served", async () => {
      const res = await fetch(`${httpUrl}/mig/v0.1/invoke/fleet.echo`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization },
        body: JSON.stringify({ payload: { n: 1 } }),
      });
      const body = (await res.json()) as any;
      return res.status === 200 ? body : undefined;
    });
    expect(answer.payload).toEqual({ served_by: "secure-worker", echo: { n: 1 } });
  }, 60_000);

  it("mig worker --help says how to join the bus", () => {
    const help = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "cli/main.ts"), "worker", "--help"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("<data dir>/credentials/runtime.json");
    expect(help.stdout).toContain("MIG_NATS_CREDENTIALS=<path>");
    expect(help.stdout).toContain("credentials/provider.json");
  }, 30_000);
});

describe("jwt mode on a bus configured elsewhere", () => {
  let open: TestRuntime;
  beforeAll(async () => {
    open = await startTestRuntime();
  });
  afterAll(async () => {
    await open?.stop();
  });

  it("refuses to start on a bus that anonymous clients can read, naming the fix", async () => {
    const gateway = startMig(["start"], {
      MIG_AUTH_MODE: "jwt",
      MIG_JWT_HS256_SECRET: SECRET,
      MIG_NATS_URL: open.runtime.natsUrl,
    });
    // Either it exits, or it comes up serving (then it is stopped here, not left running, and the test fails).
    const served = gateway.waitForLog("HTTP binding listening", 25_000).then(
      () => "serving" as const,
      () => "not serving" as const,
    );
    const outcome = await Promise.race([gateway.exited, served]);
    if (outcome === "serving") await gateway.stop();
    expect(outcome).toBe(1);
    expect(gateway.stderr()).toContain("lets anonymous clients connect and read mig.v0_1.>");
    expect(gateway.stderr()).toContain("nats-server.secure.conf");
    expect(gateway.stderr()).toContain("MIG_ALLOW_OPEN_BUS=true");
    await gateway.stop();
  }, 30_000);

  it("starts on that bus when the operator accepts the risk with MIG_ALLOW_OPEN_BUS", async () => {
    const config = loadConfig(
      {
        authMode: "jwt",
        jwtHs256Secret: SECRET,
        natsUrl: open.runtime.natsUrl,
        allowOpenBus: true,
        dataDir: open.dataDir,
        logLevel: "silent",
      },
      {},
    );
    const runtime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
    expect(runtime.busUsers).toBeUndefined();
    await runtime.stop();
  });

  it("joins a bus with users when given a credentials file (MIG_NATS_CREDENTIALS)", async () => {
    const secure = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
    try {
      const file = join(secure.dataDir, "credentials", "runtime.json");
      const config = loadConfig(
        { authMode: "jwt", jwtHs256Secret: SECRET, natsCredentials: file, dataDir: secure.dataDir, logLevel: "silent" },
        {},
      );
      const runtime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
      expect(runtime.natsUrl).toBe(secure.runtime.natsUrl);
      expect(runtime.launcher).toBeUndefined();
      await runtime.stop();
    } finally {
      await secure.stop();
    }
  });
});
