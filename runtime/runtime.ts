// The runtime of one process: starts the bus (embedded or joined), the registries and the supervisor,
// and exposes the MIG operations that every binding calls.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { MigError } from "../schemas/errors.ts";
import type {
  CancelAck,
  DiscoverResponse,
  HeartbeatAck,
  HelloResponse,
  InvokeResponse,
  MessageHeader,
} from "../schemas/types.ts";
import type { RuntimeConfig } from "./base/config.ts";
import { LoadGauge } from "./base/load.ts";
import { createLogger, type Logger } from "./base/logger.ts";
import { Metrics } from "./base/metrics.ts";
import { endSpan, tracing } from "./base/tracing.ts";
import { type Bus, type BusCredentials, connectBus } from "./bus/bus.ts";
import {
  type BusUserCredentials,
  EmbeddedBusUsers,
  generatedConfFile,
  openToAnonymous,
  RUNTIME_USER,
  readCredentialsFile,
  shownUrl,
} from "./bus/bus-credentials.ts";
import { DEFAULT_CONF, NatsLauncher } from "./bus/nats-launcher.ts";
import { type Readiness, readiness } from "./bus/readiness.ts";
import type { RuntimeCore } from "./core.ts";
import { Fleet } from "./fleet/fleet.ts";
import { InflightTables } from "./flow/inflight.ts";
import type { StreamSession } from "./flow/stream-session.ts";
import { Supervisor } from "./flow/supervisor.ts";
import { cancel } from "./ops/cancel.ts";
import { discover } from "./ops/discover.ts";
import { heartbeat } from "./ops/heartbeat.ts";
import { hello } from "./ops/hello.ts";
import { invoke } from "./ops/invoke.ts";
import { noteAnswer, startOperationSpan } from "./ops/operation-span.ts";
import { type PublishAck, publish } from "./ops/publish.ts";
import { acceptStream, type OpenStreamOptions, openStream, startSession } from "./ops/stream.ts";
import { endHandedOffSpan, traceSession } from "./ops/stream-span.ts";
import { type EventSink, type Subscription, SubscriptionRegistry, subscribe } from "./ops/subscribe.ts";
import { AuditLog, operationRecord, parseAuditQuery, type StoredAuditRecord } from "./policy/audit.ts";
import { Authenticator } from "./policy/auth.ts";
import { FairShare } from "./policy/fair-share.ts";
import { AccessPolicy, type AdminView, adminTenant, transportTenant } from "./policy/policy.ts";
import type { Principal } from "./protocol/principal.ts";
import type { RequestContext } from "./protocol/request-context.ts";
import type { CapabilityDefinition } from "./provider/provider.ts";
import { CapabilityRegistry } from "./provider/registry.ts";
import { SchemaRegistry } from "./provider/schema-registry.ts";
import { EventStore, eventStoreOptions } from "./store/events.ts";
import { type IdempotencyStore, openIdempotencyStore } from "./store/idempotency.ts";

/** What an invocation still running when its runtime stops is answered: retryable, as another runtime may take it. */
const SHUTDOWN_REASON = "the runtime is shutting down";
const shutdownError = () =>
  new MigError("MIG_UNAVAILABLE", `${SHUTDOWN_REASON}; retry the call (another runtime of the fleet takes it)`, {
    retryable: true,
    details: { cancelled: true, reason: SHUTDOWN_REASON },
  });

/** How often a draining runtime looks whether its work has finished. */
const DRAIN_POLL_MS = 25;

/** What guard() needs to audit an operation: the body (whose header acceptHeader normalized) and the request. */
export interface AuditedRequest {
  body: unknown;
  request: RequestContext;
  /** The capability, topic or target message id. */
  target?: string | undefined;
}

function fieldOf(body: unknown, field: string): string | undefined {
  const value = body !== null && typeof body === "object" ? (body as Record<string, unknown>)[field] : undefined;
  return typeof value === "string" ? value : undefined;
}

export interface RuntimeOptions {
  logger?: Logger;
  capabilities?: CapabilityDefinition[];
  /** Watch the fleet (remote providers, micro services, CANCEL fan-out); a worker without a direct lane needs none. Default true. */
  fleet?: boolean;
}

export class MigRuntime implements RuntimeCore {
  readonly serverId: string;
  /** Tells this runtime apart on the bus, even from another runtime in the same process (server_id may repeat). */
  readonly instanceId = randomUUID();
  readonly metrics = new Metrics();
  readonly schemas = new SchemaRegistry();
  readonly capabilities = new CapabilityRegistry(this.schemas);
  readonly supervisor: Supervisor;
  readonly work = new InflightTables();
  readonly load: LoadGauge;
  readonly fairShare: FairShare;
  readonly subscriptions = new SubscriptionRegistry();
  readonly policy: AccessPolicy;
  /** The authenticator every binding should use: it reports refused credentials to the audit log. */
  readonly authenticator: Authenticator;
  audit: AuditLog | undefined;
  idempotency!: IdempotencyStore;
  events!: EventStore;
  bus!: Bus;
  launcher: NatsLauncher | undefined;
  /** The users of the embedded bus, when this runtime generated them (jwt mode without MIG_NATS_CONF). */
  busUsers: EmbeddedBusUsers | undefined;
  /** How this runtime proves itself to the bus (what it connected with). */
  busCredentials: BusCredentials = {};
  fleet: Fleet | undefined;

  private constructor(
    readonly config: RuntimeConfig,
    readonly logger: Logger,
  ) {
    this.serverId = config.serverId ?? `mig-${hostname()}-${process.pid}`;
    this.supervisor = new Supervisor(this.metrics, logger);
    this.load = new LoadGauge(config.capacity, () => this.work.invocations.size);
    this.fairShare = new FairShare(
      { perTenant: config.tenantFairInflight, busyUtilisation: config.fairBusyUtilisation, waitMs: config.fairWaitMs },
      (outcome) => this.metrics.fairShareWaits.inc({ outcome }),
    );
    this.policy = AccessPolicy.load(config);
    this.authenticator = Authenticator.fromConfig(config);
    this.authenticator.onFailure = (credentials, error) => {
      const principal = { subject: credentials.actor || "unauthenticated", tenant_id: undefined, authenticated: false };
      const record = operationRecord(
        this.serverId,
        credentials.operation ?? "authenticate",
        undefined,
        {
          principal,
          tenant: credentials.tenant,
          binding: credentials.binding ?? "unknown",
        },
        undefined,
        error,
      );
      record.kind = "authentication";
      this.audit?.record(record);
    };
  }

  static async start(config: RuntimeConfig, options: RuntimeOptions = {}): Promise<MigRuntime> {
    const runtime = new MigRuntime(config, options.logger ?? createLogger(config.logLevel));
    for (const definition of options.capabilities ?? []) runtime.capabilities.add(definition);
    try {
      await runtime.connect();
      if (options.fleet !== false) {
        const fleet = await Fleet.start(runtime);
        runtime.fleet = fleet;
        // A gateway that died holding an idempotency key frees it when the fleet sees it gone, not at its deadline.
        runtime.idempotency.ownerGone = (owner) => fleet.serverGone(owner);
      }
    } catch (err) {
      await runtime.stop();
      throw err;
    }
    return runtime;
  }

  /**
   * Resolves true once no invocation or stream is in flight here, or false after `timeoutMs` with some still
   * running: a gateway that stopped taking work waits here before stop() cancels what is left.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (this.work.invocations.size === 0 && this.work.streams.size === 0) return true;
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
  }

  /** Whether this process can serve now: the bus and JetStream answer (GET /readyz). */
  readiness(): Promise<Readiness> {
    return readiness(this.bus);
  }

  /** The URL of the bus this runtime uses (the embedded server's when it started one). */
  get natsUrl(): string {
    return this.bus.url;
  }

  private async connect(): Promise<void> {
    await this.connectToBus();
    const audit = new AuditLog(this.bus, this.config, this.logger);
    await audit.open();
    this.audit = audit;
    this.idempotency = await openIdempotencyStore(this.bus, this.config, this.serverId, this.logger);
    this.events = new EventStore(this.bus, eventStoreOptions(this.config), this.logger);
    await this.events.init();
    // Schema bodies are the fleet's: every runtime validates with the same ones (runtime/provider/schema-store.ts).
    await this.schemas.attachStore(this.bus, this.config.jsReplicas, this.logger);
  }

  /**
   * Starts the embedded bus (unless the runtime joins one) and connects to it. In jwt mode no one may read the bus
   * without a credential, since callers' bearer tokens travel on it: the embedded bus gets generated users (unless
   * MIG_NATS_CONF names its configuration), and a bus joined or configured otherwise must refuse anonymous clients.
   */
  private async connectToBus(): Promise<void> {
    const config = this.config;
    const credentials: BusCredentials = {
      user: config.natsUser,
      password: config.natsPassword,
      credsFile: config.natsCredsFile,
      tlsCa: config.natsTlsCa,
      tlsCert: config.natsTlsCert,
      tlsKey: config.natsTlsKey,
    };
    let url = config.natsUrl;
    if (config.natsCredentials) {
      const file = readCredentialsFile(config.natsCredentials);
      if (!url && !file.url)
        throw new Error(
          `MIG_NATS_CREDENTIALS: ${config.natsCredentials} names no bus URL yet (its runtime has not started its bus); start that runtime first or set MIG_NATS_URL`,
        );
      url ||= file.url;
      // A user named explicitly (MIG_NATS_USER, MIG_NATS_CREDS_FILE) wins over the file's.
      if (!config.natsUser && !config.natsCredsFile)
        Object.assign(credentials, { user: file.user, password: file.password });
    }
    if (!url) {
      const generateUsers = config.authMode === "jwt" && !config.natsConf;
      this.launcher = new NatsLauncher({
        port: config.natsPort,
        monitorPort: config.natsMonitorPort,
        dataDir: config.dataDir,
        logger: this.logger,
        startTimeoutMs: config.natsStartTimeoutMs,
        ...(generateUsers
          ? { confFile: generatedConfFile(config.dataDir) }
          : config.natsConf
            ? { confFile: config.natsConf }
            : {}),
      });
      // Claimed before anything is written into it: a runtime refused for a live owner must not touch its files.
      await this.launcher.claim();
      if (generateUsers) {
        const storeDir = join(resolve(config.dataDir), "jetstream");
        this.busUsers = EmbeddedBusUsers.prepare(config.dataDir, DEFAULT_CONF, storeDir, this.logger);
        Object.assign(credentials, {
          user: RUNTIME_USER,
          password: this.busUsers.runtimePassword,
          credsFile: undefined,
        });
      }
      this.launcher.on("restarted", () => this.metrics.supervisorRestarts.inc({ child: "nats-server" }));
      const ports = await this.launcher.start();
      url = ports.clientUrl;
      this.logger.info({ url, monitor: ports.monitorUrl, data_dir: config.dataDir }, "embedded nats-server listening");
      if (this.busUsers) {
        const launcher = this.launcher;
        this.busUsers.serverPid = () => launcher.pid;
        this.busUsers.published(url);
      }
    }
    this.busCredentials = credentials;
    try {
      this.bus = await connectBus(url, this.serverId, this.logger, credentials);
    } catch (err) {
      if (!/authorization|authentication/i.test((err as Error).message)) throw err;
      throw new Error(
        `the NATS bus at ${shownUrl(url)} refused this runtime's credential (${(err as Error).message}): give it a user of that bus, ` +
          "MIG_NATS_CREDENTIALS=<file> (a jwt-mode gateway writes <data dir>/credentials/runtime.json; a mig worker with the gateway's MIG_DATA_DIR finds it), " +
          "or MIG_NATS_USER and MIG_NATS_PASSWORD, or MIG_NATS_CREDS_FILE",
      );
    }
    if (config.authMode === "jwt") await this.checkBusSecurity(url);
  }

  /** jwt mode: says which bus security is in force, and refuses a bus that anonymous clients can read (unless allowed). */
  private async checkBusSecurity(url: string): Promise<void> {
    if (this.busUsers) {
      this.logger.info(
        {
          runtime_credentials: this.busUsers.runtimeCredentialsFile,
          provider_credentials: this.busUsers.providerCredentialsFile,
          tenant_credentials: "POST /mig/v0.1/nats/credentials",
        },
        "bus security: generated users, no anonymous access; a mig worker with the same MIG_DATA_DIR (or MIG_NATS_CREDENTIALS) reads the runtime credentials file",
      );
      return;
    }
    if (!(await openToAnonymous(url, this.config.natsTlsCa))) {
      this.logger.info(
        { url: shownUrl(url) },
        "bus security: the bus refuses anonymous clients (checked at start); its users are configured outside the runtime",
      );
      return;
    }
    if (this.config.allowOpenBus) {
      this.logger.warn(
        { url: shownUrl(url) },
        "bus security: none (MIG_ALLOW_OPEN_BUS=true): anonymous clients can read every tenant's requests and bearer tokens",
      );
      return;
    }
    throw new Error(
      `the NATS bus at ${shownUrl(url)} lets anonymous clients connect and read mig.v0_1.>, where every caller's bearer token travels; ` +
        "in jwt mode run it with users (nats-server.secure.conf, or leave MIG_NATS_URL and MIG_NATS_CONF unset for generated ones) and give this runtime its credential " +
        "(MIG_NATS_USER and MIG_NATS_PASSWORD, MIG_NATS_CREDS_FILE or MIG_NATS_CREDENTIALS), or set MIG_ALLOW_OPEN_BUS=true to accept the risk",
    );
  }

  /**
   * POST /mig/v0.1/nats/credentials: the bus user of the caller's tenant, for the NATS binding (docs/security.md).
   * Only a runtime that generated its bus's users issues them; the token's tenant decides which user.
   */
  natsCredentials(body: unknown, request: RequestContext, what?: string): Promise<BusUserCredentials> {
    return this.guard(
      "nats.credentials",
      () => {
        if (what !== "credentials")
          throw new MigError(
            "MIG_NOT_FOUND",
            `no MIG route POST /mig/v0.1/nats/${what ?? ""}; bus credentials are at POST /mig/v0.1/nats/credentials`,
          );
        if (!this.busUsers) {
          throw new MigError(
            "MIG_NOT_FOUND",
            "this runtime issues no bus credentials: only a jwt-mode runtime on its embedded bus with generated users does (no MIG_NATS_URL, no MIG_NATS_CONF); ask the bus's operator for a credential",
          );
        }
        const tenant = transportTenant(request.principal, request.tenant);
        if (!request.principal.authenticated || tenant === undefined)
          throw new MigError("MIG_UNAUTHORIZED", "bus credentials need a bearer token that names a tenant");
        request.authorized = true;
        return this.busUsers.tenantCredentials(tenant);
      },
      { body, request, target: "nats.credentials" },
    );
  }

  hello(body: unknown, request: RequestContext): Promise<HelloResponse> {
    return this.guard("hello", () => hello(this, body, request), { body, request });
  }

  discover(body: unknown, request: RequestContext): Promise<DiscoverResponse> {
    return this.guard("discover", () => discover(this, body, request), { body, request });
  }

  invoke(body: unknown, request: RequestContext, capability?: string): Promise<InvokeResponse> {
    return this.guard("invoke", () => invoke(this, body, request, capability), {
      body,
      request,
      target: capability ?? fieldOf(body, "capability"),
    });
  }

  cancel(body: unknown, request: RequestContext, messageId?: string): Promise<CancelAck> {
    return this.guard("cancel", () => cancel(this, body, request, messageId), {
      body,
      request,
      target: messageId ?? fieldOf(body, "target_message_id"),
    });
  }

  heartbeat(body: unknown, request: RequestContext): Promise<HeartbeatAck> {
    return this.guard("heartbeat", () => heartbeat(this, body, request), { body, request });
  }

  publish(body: unknown, request: RequestContext, topic?: string): Promise<PublishAck> {
    return this.guard("publish", () => publish(this, body, request, topic), {
      body,
      request,
      target: topic ?? fieldOf(body, "topic"),
    });
  }

  /** Opens a subscription that writes to `sink` until either side closes it (docs/events.md). */
  subscribe(body: unknown, request: RequestContext, topic: string | undefined, sink: EventSink): Promise<Subscription> {
    return this.guard("subscribe", () => subscribe(this, body, request, topic, sink), {
      body,
      request,
      target: topic ?? fieldOf(body, "topic"),
    });
  }

  /**
   * Counts every MIG error by code and turns anything unexpected into MIG_INTERNAL (logged, never leaked).
   * With `audited`, the operation's outcome and authorization decision go to the audit log (queued,
   * never awaited).
   */
  guard<T>(operation: string, run: () => T | Promise<T>, audited?: AuditedRequest): Promise<T> {
    if (!tracing.on || !audited) return this.guarded(operation, run, audited);
    const span = startOperationSpan(operation, audited.body, audited.request, audited.target);
    audited.request.span = span;
    return this.guarded(operation, run, audited).then(
      (answer) => {
        noteAnswer(span, answer);
        endSpan(span);
        return answer;
      },
      (err: unknown) => {
        endSpan(span, err);
        throw err;
      },
    );
  }

  private async guarded<T>(operation: string, run: () => T | Promise<T>, audited?: AuditedRequest): Promise<T> {
    try {
      const result = await run();
      if (audited && this.audit) {
        const hidden = audited.request.hiddenDenial;
        if (hidden) this.metrics.errors.inc({ code: hidden.code, operation });
        this.audit.record(
          operationRecord(this.serverId, operation, audited.body, audited.request, audited.target, hidden),
        );
      }
      return result;
    } catch (err) {
      const error = err instanceof MigError ? err : this.unexpected(operation, err);
      this.metrics.errors.inc({ code: error.code, operation });
      if (error.cause !== undefined) this.logCause(operation, error);
      if (audited && this.audit)
        this.audit.record(
          operationRecord(this.serverId, operation, audited.body, audited.request, audited.target, error),
        );
      throw error;
    }
  }

  /**
   * The tenant a connection establishes when it opens (a WebSocket upgrade): the credential's tenant
   * checked against the one the transport names. A refusal is audited like a refused operation; the
   * caller counts it when it answers.
   */
  connectionTenant(request: RequestContext, operation: string): string | undefined {
    try {
      return transportTenant(request.principal, request.tenant);
    } catch (err) {
      if (err instanceof MigError && this.audit)
        this.audit.record(operationRecord(this.serverId, operation, undefined, request, undefined, err));
      throw err;
    }
  }

  /**
   * Admin routes and /metrics: the admin scope in jwt mode, scoped to the admin's tenant unless the token
   * holds the cross-tenant scope (runtime/policy/policy.ts). Every decision, allow or deny, is audited.
   * `what` names the route, e.g. "GET /admin/v0.1/audit".
   */
  authorizeAdmin(principal: Principal, what: string, everyTenant = false, binding = "http"): AdminView {
    let error: MigError | undefined;
    let view: AdminView | undefined;
    try {
      view = this.policy.authorizeAdmin(principal, what, everyTenant);
    } catch (err) {
      error = err as MigError;
      this.metrics.errors.inc({ code: error.code, operation: "admin" });
    }
    const record = operationRecord(
      this.serverId,
      "admin",
      undefined,
      { principal, binding, authorized: !error },
      what,
      error,
    );
    record.kind = "admin";
    this.audit?.record(record);
    if (error) throw error;
    return view!;
  }

  /**
   * GET /admin/v0.1/audit: records filtered by `tenant`, newest `limit` or `limit` after the cursor `after`.
   * A tenant-scoped admin reads only its own tenant's records, whatever `tenant` says.
   */
  readAudit(
    params: { get(name: string): string | null },
    view: AdminView = { tenant: undefined },
  ): Promise<{ records: StoredAuditRecord[]; last_seq: number }> {
    return this.guard("admin.audit", () => {
      if (!this.audit) throw new MigError("MIG_UNAVAILABLE", "the audit log is not open yet");
      const query = parseAuditQuery(params);
      query.tenant = adminTenant(
        view,
        query.tenant,
        `read tenant "${query.tenant}"'s records`,
        this.config.adminGlobalScope,
      );
      return this.audit.query(query);
    });
  }

  private unexpected(operation: string, err: unknown): MigError {
    this.logger.error(
      { operation, err: err instanceof Error ? err.stack : String(err) },
      "unexpected failure in an operation",
    );
    return new MigError(
      "MIG_INTERNAL",
      `the ${operation} operation failed inside the runtime; the log has the details`,
    );
  }

  /**
   * Starts a streaming invocation whose frames go to `options.sink` (runtime/flow/stream-session.ts). Synchronous,
   * so that a binding can route the caller's next frame to the stream at once; throws the MigError
   * to answer when the request is refused.
   */
  openStream(body: unknown, request: RequestContext, options: OpenStreamOptions): StreamSession {
    // Audited like a unary INVOKE (the opening decision; the stream's end is in mig_streams_total).
    const target =
      options.capability ??
      (typeof (body as { capability?: unknown })?.capability === "string"
        ? (body as { capability: string }).capability
        : undefined);
    if (!tracing.on) return this.openStreamNow(body, request, options, target);
    const span = startOperationSpan("stream", body, request, target);
    try {
      const session = this.openStreamNow(body, request, { ...options, span }, target);
      traceSession(span, session);
      return session;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  private openStreamNow(
    body: unknown,
    request: RequestContext,
    options: OpenStreamOptions,
    target: string | undefined,
  ): StreamSession {
    try {
      const session = openStream(this, body, request, options);
      if (this.audit && !options.authorized)
        this.audit.record(operationRecord(this.serverId, "stream", body, request, target, undefined));
      return session;
    } catch (err) {
      const error = this.counted("stream", err);
      if (this.audit && !options.authorized)
        this.audit.record(operationRecord(this.serverId, "stream", body, request, target, error));
      throw error;
    }
  }

  /**
   * Starts a stream whose frames go out on bus subjects named by its stream id (the NATS binding). A
   * capability that a worker serves is handed off: checked here like any stream, then run whole by the
   * worker, which publishes the frames and reads the caller's subject itself (runtime/fleet/stream-handoff.ts);
   * `session` is then undefined. Otherwise it runs here, as openStream does.
   */
  async openBusStream(
    body: unknown,
    request: RequestContext,
    options: OpenStreamOptions,
  ): Promise<{ header: MessageHeader; capability: string; session?: StreamSession }> {
    const target =
      options.capability ??
      (typeof (body as { capability?: unknown })?.capability === "string"
        ? (body as { capability: string }).capability
        : undefined);
    if (!tracing.on) return this.openBusStreamNow(body, request, options, target);
    const span = startOperationSpan("stream", body, request, target);
    try {
      const opened = await this.openBusStreamNow(body, request, { ...options, span }, target);
      if (opened.session) traceSession(span, opened.session);
      else endHandedOffSpan(span);
      return opened;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  private async openBusStreamNow(
    body: unknown,
    request: RequestContext,
    options: OpenStreamOptions,
    target: string | undefined,
  ): Promise<{ header: MessageHeader; capability: string; session?: StreamSession }> {
    try {
      const accepted = acceptStream(this, body, request, options);
      let session: StreamSession | undefined;
      if (accepted.entry.handOff) await accepted.entry.handOff(accepted);
      else session = startSession(this, accepted, options);
      if (this.audit && !options.authorized)
        this.audit.record(operationRecord(this.serverId, "stream", body, request, target, undefined));
      return { header: accepted.header, capability: accepted.entry.descriptor.id, session };
    } catch (err) {
      const error = this.counted("stream", err);
      if (this.audit && !options.authorized)
        this.audit.record(operationRecord(this.serverId, "stream", body, request, target, error));
      throw error;
    }
  }

  /** What guard() does for code that cannot await: the MigError to answer for `err`, counted by code. */
  counted(operation: string, err: unknown): MigError {
    const error = err instanceof MigError ? err : this.unexpected(operation, err);
    this.metrics.errors.inc({ code: error.code, operation });
    if (error.cause !== undefined) this.logCause(operation, error);
    return error;
  }

  /** The library's or system's error behind a MigError: the caller got a sanitized `details.cause`, the log gets it whole. */
  logCause(operation: string, error: MigError): void {
    const cause = error.cause;
    this.logger.warn(
      { operation, code: error.code, cause: cause instanceof Error ? (cause.stack ?? cause.message) : String(cause) },
      error.message,
    );
  }

  async stop(): Promise<void> {
    for (const stream of [...this.work.streams.values()]) stream.cancel(SHUTDOWN_REASON);
    this.load.stop();
    this.fairShare.stop();
    for (const { actor } of [...this.work.invocations.values()])
      actor.send({ type: "CANCEL", reason: SHUTDOWN_REASON, error: shutdownError() });
    await this.subscriptions.closeAll(
      "the runtime is shutting down; subscribe again, on another gateway if there is one, with your last sequence as resume_cursor (or Last-Event-ID)",
    );
    await this.audit?.close();
    await this.fleet?.stop();
    this.schemas.detachStore();
    if (this.bus) await this.bus.nc.drain().catch(() => undefined);
    if (this.launcher) await this.launcher.stop();
  }
}
