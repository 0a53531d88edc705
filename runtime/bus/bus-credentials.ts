// The users of the embedded bus in jwt mode: their passwords, the nats-server configuration that enforces them, the
// credentials files that workers and foreign providers read, and the tenant users that callers obtain with a token.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { MigError } from "../../schemas/errors.ts";
import type { Logger } from "../base/logger.ts";
import { checkTenant } from "../protocol/names.ts";

/** What a credentials file holds, and what POST /mig/v0.1/nats/credentials answers: enough to connect. */
export interface BusUserCredentials {
  url: string;
  user: string;
  password: string;
  /** The inbox prefix the user must give its NATS client: replies reach it only there. */
  inbox_prefix?: string;
}

export const RUNTIME_USER = "runtime";
export const PROVIDER_USER = "provider";
/** The provider protocol's inbox prefix (docs/bindings/provider-protocol.md); no tenant may have it. */
export const PROVIDER_INBOX_PREFIX = "_INBOX_provider";

/** `<data dir>/credentials`: the generated configuration and the credentials files, readable by the owner only. */
export function credentialsDir(dataDir: string): string {
  return join(resolve(dataDir), "credentials");
}

/** The file a `mig worker` with the same MIG_DATA_DIR reads to join the bus as the runtime user. */
export function runtimeCredentialsFile(dataDir: string): string {
  return join(credentialsDir(dataDir), "runtime.json");
}

/** The file to hand to a foreign provider (docs/bindings/provider-protocol.md). */
export function providerCredentialsFile(dataDir: string): string {
  return join(credentialsDir(dataDir), "provider.json");
}

/** Reads a credentials file ({ url, user, password }); `what` names the setting that pointed at it. */
export function readCredentialsFile(path: string, what = "MIG_NATS_CREDENTIALS"): BusUserCredentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`${what}: cannot read the bus credentials file ${path} (${(err as Error).message})`);
  }
  const file = parsed as Partial<BusUserCredentials> | null;
  if (!file || typeof file.url !== "string" || typeof file.user !== "string" || typeof file.password !== "string") {
    throw new Error(`${what}: ${path} must be a JSON object with the strings "url", "user" and "password"`);
  }
  return {
    url: file.url,
    user: file.user,
    password: file.password,
    ...(typeof file.inbox_prefix === "string" ? { inbox_prefix: file.inbox_prefix } : {}),
  };
}

/** The bus user name of a tenant's callers: prefixed, so that no tenant name can be the runtime's or a provider's user. */
export function tenantUser(tenant: string): string {
  return `tenant-${tenant}`;
}

export function tenantInboxPrefix(tenant: string): string {
  return `_INBOX_${tenant}`;
}

/** The same lists as nats-server.secure.conf, which explains each subject. */
const PROVIDER_PERMISSIONS = `{
      publish: { allow: ["_MIG.provider.>", "_MIG.sgw.>", "mig.v0_1.*.stream.*", "$JS.API.CONSUMER.MSG.NEXT.MIG_WORK.>", "$JS.API.CONSUMER.INFO.MIG_WORK.>", "$JS.ACK.MIG_WORK.>"] }
      subscribe: { allow: ["_MIG.work.>", "_MIG.cancel.>", "_MIG.stream.>", "_MIG.swk.>", "mig.v0_1.*.stream.*.in", "${PROVIDER_INBOX_PREFIX}.>"] }
      allow_responses: { max: 1000, expires: "10m" }
    }`;

/**
 * A tenant's callers: the tenant's public subjects, except the five-token frame subjects of NATS streams, which only
 * the runtime and providers publish (a caller publishes on the stream's `.in` subject, one token longer); replies in
 * the tenant's inbox, the tenant's live events and the frames of its streams. Nothing internal, no JetStream, no
 * other tenant.
 */
function tenantPermissions(tenant: string): string {
  return `{
      publish: { allow: ["mig.v0_1.${tenant}.>"], deny: ["mig.v0_1.${tenant}.stream.*"] }
      subscribe: { allow: ["${tenantInboxPrefix(tenant)}.>", "mig.v0_1.${tenant}.events.>", "mig.v0_1.${tenant}.stream.*"] }
    }`;
}

/** 192 random bits, in characters that need no quoting anywhere (base64url). */
function newPassword(): string {
  return randomBytes(24).toString("base64url");
}

/** Writes `text` readable by the owner only, whole or not at all (a reader never sees half a file). */
function writePrivate(path: string, text: string): void {
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, text, { mode: 0o600 });
  chmodSync(partial, 0o600);
  renameSync(partial, path);
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined;
  }
}

function passwordIn(path: string, user: string): string | undefined {
  const file = readJson(path) as Partial<BusUserCredentials> | undefined;
  return file?.user === user && typeof file.password === "string" && file.password !== "" ? file.password : undefined;
}

/** How long a new tenant user may take to be accepted after the configuration reload. */
const RELOAD_WAIT_MS = 5_000;

/** Where the generated nats-server configuration of a data directory lives. */
export function generatedConfFile(dataDir: string): string {
  return join(credentialsDir(dataDir), "nats-server.conf");
}

/**
 * The users of an embedded bus that the runtime configures itself (jwt mode, no MIG_NATS_CONF). Passwords are kept
 * in `<data dir>/credentials` across restarts, so that workers and callers holding them reconnect after a gateway
 * restart; deleting that directory rotates them all at the next start.
 */
export class EmbeddedBusUsers {
  /** The nats-server configuration to start the embedded server with. */
  readonly confFile: string;
  private url = "";
  /** Tenants whose user the running server has accepted (all of those in the file at start). */
  private readonly applied = new Set<string>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The server's pid, for the reload signal; set once it runs (it changes when the launcher revives it). */
  serverPid: () => number | undefined = () => undefined;

  private constructor(
    private readonly dir: string,
    private readonly storeDir: string,
    private readonly baseConf: string,
    readonly runtimePassword: string,
    private readonly providerPassword: string,
    private readonly tenants: Map<string, string>,
    private readonly logger: Logger,
  ) {
    this.confFile = join(dir, "nats-server.conf");
    for (const tenant of tenants.keys()) this.applied.add(tenant);
  }

  /**
   * Reads the kept passwords (or makes new ones) and writes the configuration. `baseConfFile` gives the listeners
   * and limits (the default nats-server.conf); `storeDir` must be the JetStream directory the server is started with.
   */
  static prepare(dataDir: string, baseConfFile: string, storeDir: string, logger: Logger): EmbeddedBusUsers {
    const dir = credentialsDir(dataDir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const runtimePassword = passwordIn(join(dir, "runtime.json"), RUNTIME_USER) ?? newPassword();
    const providerPassword = passwordIn(join(dir, "provider.json"), PROVIDER_USER) ?? newPassword();
    const tenants = new Map<string, string>();
    const kept = readJson(join(dir, "tenants.json"));
    if (kept && typeof kept === "object" && !Array.isArray(kept)) {
      for (const [tenant, password] of Object.entries(kept as Record<string, unknown>)) {
        // A name that is no longer a valid tenant (hand-edited file) is dropped rather than written into the configuration.
        if (
          typeof password === "string" &&
          password !== "" &&
          /^[A-Za-z0-9_-]{1,64}$/.test(tenant) &&
          tenant !== PROVIDER_USER
        )
          tenants.set(tenant, password);
      }
    }
    const users = new EmbeddedBusUsers(
      dir,
      storeDir,
      readFileSync(baseConfFile, "utf8"),
      runtimePassword,
      providerPassword,
      tenants,
      logger,
    );
    // Until the server reports its address, the files keep the one of the last run (the same unless its port was 0).
    const previous = readJson(join(dir, "runtime.json")) as Partial<BusUserCredentials> | undefined;
    if (typeof previous?.url === "string") users.url = previous.url;
    users.writeFiles();
    writePrivate(users.confFile, users.configuration(false));
    return users;
  }

  get runtimeCredentialsFile(): string {
    return join(this.dir, "runtime.json");
  }

  get providerCredentialsFile(): string {
    return join(this.dir, "provider.json");
  }

  /** Records the server's client URL in the credentials files (known once the server has chosen its port). */
  published(url: string): void {
    this.url = url;
    this.writeFiles();
  }

  /**
   * The bus user of `tenant`'s callers: created the first time (the configuration is rewritten and the running
   * server reloads it, keeping every connection), the same one afterwards.
   */
  tenantCredentials(tenant: string): Promise<BusUserCredentials> {
    checkTenant(tenant);
    if (tenantInboxPrefix(tenant) === PROVIDER_INBOX_PREFIX) {
      throw new MigError(
        "MIG_FORBIDDEN",
        `tenant "${tenant}" cannot have a bus user: its inbox prefix ${PROVIDER_INBOX_PREFIX} is the providers'; use the HTTP or gRPC binding`,
      );
    }
    // One change of the configuration at a time: two new tenants must not overwrite each other's user.
    const next = this.queue.then(() => this.ensureTenant(tenant));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async ensureTenant(tenant: string): Promise<BusUserCredentials> {
    let password = this.tenants.get(tenant);
    if (password === undefined) {
      password = newPassword();
      this.tenants.set(tenant, password);
      this.writeFiles();
    }
    const credentials = { url: this.url, user: tenantUser(tenant), password, inbox_prefix: tenantInboxPrefix(tenant) };
    if (!this.applied.has(tenant)) {
      await this.reload(credentials);
      this.applied.add(tenant);
      this.logger.info({ tenant, user: credentials.user }, "bus user created for a tenant");
    }
    return credentials;
  }

  /**
   * Makes the running server take the new user. nats-server 2.9 reloads its configuration on SIGHUP, keeping every
   * connection, but refuses a reload whose JetStream directory differs from the running one, and the directory
   * it was started with came from its -sd flag, which a reload does not re-apply. So the file names the directory
   * for the reload and loses it again once the reload took (a server started with both -sd and store_dir exits),
   * so that the launcher can still revive a crashed server with the same file.
   */
  private async reload(probe: BusUserCredentials): Promise<void> {
    const pid = this.serverPid();
    if (pid === undefined)
      throw new MigError("MIG_UNAVAILABLE", "the embedded bus is not running; retry when it is back", {
        retryable: true,
      });
    writePrivate(this.confFile, this.configuration(true));
    try {
      process.kill(pid, "SIGHUP");
      const until = Date.now() + RELOAD_WAIT_MS;
      for (;;) {
        let nc: NatsConnection | undefined;
        try {
          nc = await connect({
            servers: probe.url,
            user: probe.user,
            pass: probe.password,
            reconnect: false,
            timeout: 2_000,
          });
          return;
        } catch (err) {
          if (Date.now() > until) {
            this.logger.warn(
              { tenant_user: probe.user, err: (err as Error).message },
              "the embedded bus did not take a new tenant user",
            );
            throw new MigError(
              "MIG_UNAVAILABLE",
              "the bus did not accept the new credentials in time; retry (the runtime's log has the server's answer)",
              { retryable: true },
            );
          }
          await new Promise((r) => setTimeout(r, 25));
        } finally {
          await nc?.close().catch(() => undefined);
        }
      }
    } finally {
      writePrivate(this.confFile, this.configuration(false));
    }
  }

  private writeFiles(): void {
    writePrivate(
      join(this.dir, "runtime.json"),
      `${JSON.stringify({ url: this.url, user: RUNTIME_USER, password: this.runtimePassword }, null, 2)}\n`,
    );
    writePrivate(
      join(this.dir, "provider.json"),
      `${JSON.stringify({ url: this.url, user: PROVIDER_USER, password: this.providerPassword, inbox_prefix: PROVIDER_INBOX_PREFIX }, null, 2)}\n`,
    );
    writePrivate(join(this.dir, "tenants.json"), `${JSON.stringify(Object.fromEntries(this.tenants), null, 2)}\n`);
  }

  private configuration(forReload: boolean): string {
    const users = [
      `    { user: "${RUNTIME_USER}", password: "${this.runtimePassword}", permissions: { publish: ">", subscribe: ">" } }`,
      `    { user: "${PROVIDER_USER}", password: "${this.providerPassword}", permissions: ${PROVIDER_PERMISSIONS} }`,
      ...[...this.tenants].map(
        ([tenant, password]) =>
          `    { user: "${tenantUser(tenant)}", password: "${password}", permissions: ${tenantPermissions(tenant)} }`,
      ),
    ];
    return [
      "# Written by the MIG runtime at each start in jwt mode (runtime/bus/bus-credentials.ts); edits are lost.",
      "# The listeners and limits of nats-server.conf, plus one user per role and per tenant. No anonymous access.",
      this.baseConf.trimEnd(),
      "",
      ...(forReload ? [`store_dir: ${JSON.stringify(this.storeDir)}`, ""] : []),
      "authorization {",
      "  users = [",
      ...users,
      "  ]",
      "}",
      "",
    ].join("\n");
  }
}

/**
 * True when an anonymous client can connect to `url` and subscribe to every tenant's public subjects (where callers'
 * bearer tokens travel). A connection refused for any reason counts as closed: the runtime itself just connected, so
 * the bus is up and the refusal is the server's.
 */
export async function openToAnonymous(url: string, tlsCa?: string): Promise<boolean> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: url.split(","),
      reconnect: false,
      timeout: 3_000,
      name: "mig-open-bus-check",
      ...(tlsCa ? { tls: { caFile: tlsCa } } : {}),
    });
  } catch {
    return false;
  }
  try {
    const sub = nc.subscribe("mig.v0_1.>");
    // The server answers SUB before PONG: a refused subscription is closed once the flush returns.
    await nc.flush();
    return !sub.isClosed();
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** The URL without a user or password in it, for messages and logs. */
export function shownUrl(url: string): string {
  return url
    .split(",")
    .map((one) => one.replace(/\/\/[^@/]*@/, "//"))
    .join(",");
}
