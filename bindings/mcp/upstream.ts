// One MCP server attached as a MIG provider: the MCP SDK client's connection to it over stdio (a child process this
// worker starts) or Streamable HTTP, kept alive (a lost connection is rebuilt with backoff, a dead child started
// again), and the requests run on it. While there is no connection a request fails at once with MIG_UNAVAILABLE.
import {
  Client,
  type JSONRPCMessage,
  type Prompt,
  StreamableHTTPClientTransport,
  type Tool,
  type Transport,
} from "@modelcontextprotocol/client";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import type { Logger } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { UpstreamSpec } from "./upstream-config.ts";
import { migErrorOf, putsConnectionInDoubt } from "./upstream-errors.ts";

const CLIENT_INFO = { name: "mig-worker", version: "0.1.0" };
/** How long the handshake and the first tool list may take before the attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long an HTTP server has to answer the ping that checks a connection in doubt. */
const PROBE_TIMEOUT_MS = 2_000;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 15_000;
/** A connection that lived this long was healthy: after its loss the pauses start from the first one again. */
const STABLE_MS = 30_000;
/** Lines of a child's standard error kept for the log line that reports its exit. */
const STDERR_LINES_KEPT = 20;
/** Prefix of the progress tokens this worker hands out, so the notifications that carry them are recognised. */
const TOKEN_PREFIX = "mig-";

type ProgressListener = (params: Record<string, unknown>) => void;

/** One live connection: the client, and the requests and progress listeners that depend on it. */
export class UpstreamSession {
  readonly since = Date.now();
  private readonly progress = new Map<string, ProgressListener>();
  private readonly running = new Set<(err: MigError) => void>();
  private tokens = 0;

  constructor(readonly client: Client) {}

  /** Routes the progress notifications of one request to `listener`; the token goes into its `_meta`. */
  listenProgress(listener: ProgressListener): string {
    const token = `${TOKEN_PREFIX}${++this.tokens}`;
    this.progress.set(token, listener);
    return token;
  }

  stopProgress(token: string): void {
    this.progress.delete(token);
  }

  /**
   * Takes a progress notification for one of this worker's tokens off the wire, in wire order. The SDK hands
   * notifications to their handlers a microtask later than responses, so a server's last progress before its
   * result would reach the SDK's own handler after the result, and be dropped as for an unknown token.
   */
  takeProgress(message: JSONRPCMessage): boolean {
    if (!("method" in message) || message.method !== "notifications/progress" || "id" in message) return false;
    const params = (message.params ?? {}) as Record<string, unknown>;
    const token = params.progressToken;
    if (typeof token !== "string" || !token.startsWith(TOKEN_PREFIX)) return false;
    this.progress.get(token)?.(params); // one that comes after its request ended has nobody to go to
    return true;
  }

  /** Runs `work`, failing it (and aborting it through `abort`) when the connection is lost before it settles. */
  track<T>(work: Promise<T>, abort: AbortController): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (err: MigError) => {
        abort.abort(err);
        reject(err);
      };
      this.running.add(fail);
      work.then(resolve, reject).finally(() => this.running.delete(fail));
    });
  }

  /** The connection is gone: every request on it fails with `err` now, not at its deadline. */
  failAll(err: MigError): void {
    for (const fail of [...this.running]) fail(err);
    this.running.clear();
    this.progress.clear();
  }
}

export class McpUpstream {
  /** The capability ids' prefix: the spec's, or derived from the server's name at the first connection. */
  namespace: string | undefined;
  /** The server's tools as last listed; kept while the connection is down, so its capabilities stay known. */
  tools: Tool[] = [];
  /** Its prompts as last listed (none when it does not offer the prompts capability). */
  prompts: Prompt[] = [];
  /** Whether it offers resources (read and listed through two capabilities of their own). */
  resources = false;
  /** The server's name and version from its last handshake. */
  server: { name: string; version: string } | undefined;
  private session: UpstreamSession | undefined;
  private closed = false;
  private retryMs = RETRY_FIRST_MS;
  private nextAttemptAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private downReason = "not connected yet";
  private probing = false;
  private readonly stderrTail: string[] = [];
  private firstUp!: () => void;
  private readonly connectedOnce = new Promise<void>((resolve) => (this.firstUp = resolve));

  constructor(
    readonly spec: UpstreamSpec,
    private readonly logger: Logger,
    /** Called whenever `tools` or `prompts` change (a new connection, a `notifications/…/list_changed`). */
    private readonly onListsChanged: () => void,
  ) {
    this.namespace = spec.namespace;
  }

  /** The server's name in messages: its namespace once known, else where it was configured. */
  get label(): string {
    return this.namespace ?? this.spec.origin;
  }

  /** Starts connecting; a failed attempt is tried again with backoff until `close`. */
  start(): void {
    void this.connect();
  }

  /** Resolves true once the first connection is up, or false after `limitMs` (attempts go on). */
  started(limitMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.connectedOnce.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), limitMs))),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Runs one request on the live connection. Without one it fails at once with MIG_UNAVAILABLE (retryable, with
   * `retry_after_ms` until the next connection attempt); a connection lost while it runs fails it the same way at
   * once. `signal` (the invocation's cancel and deadline) aborts the request, which tells the server
   * (`notifications/cancelled`). Whatever it throws comes out as a MigError.
   */
  async run<T>(
    what: string,
    signal: AbortSignal,
    work: (session: UpstreamSession, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const session = this.session;
    if (!session) throw this.unavailable(what);
    const abort = new AbortController();
    const forward = () => abort.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener("abort", forward, { once: true });
    try {
      return await session.track(work(session, abort.signal), abort);
    } catch (err) {
      if (putsConnectionInDoubt(err)) this.doubt(session, err);
      throw migErrorOf(err, { upstream: this.label, what });
    } finally {
      signal.removeEventListener("abort", forward);
    }
  }

  /** The error of a request made while there is no connection. */
  unavailable(what: string): MigError {
    return new MigError(
      "MIG_UNAVAILABLE",
      `MCP server ${this.label} is not connected (${this.downReason}), so ${what} cannot run; the worker is connecting again`,
      { details: { upstream: this.label, retry_after_ms: Math.max(0, this.nextAttemptAt - Date.now()) } },
    );
  }

  /** Ends the connection (a child process is stopped) and makes no new one; requests running fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const session = this.session;
    this.session = undefined;
    if (!session) return;
    session.failAll(new MigError("MIG_UNAVAILABLE", `the worker is detaching MCP server ${this.label}`));
    await session.client.close().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    let session: UpstreamSession | undefined;
    const client = new Client(CLIENT_INFO, {
      listChanged: {
        tools: { onChanged: (err, tools) => (session ? this.listChanged(session, err, { tools }) : undefined) },
        prompts: { onChanged: (err, prompts) => (session ? this.listChanged(session, err, { prompts }) : undefined) },
      },
    });
    client.onclose = () => {
      if (session)
        this.lost(session, this.spec.transport.kind === "stdio" ? "the server process ended" : "the connection closed");
    };
    client.onerror = (err) => {
      if (session) this.doubt(session, err);
    };
    try {
      const transport = this.transport();
      await client.connect(transport, { timeout: CONNECT_TIMEOUT_MS });
      const offers = client.getServerCapabilities() ?? {};
      const listed = await client.listTools(undefined, { timeout: CONNECT_TIMEOUT_MS });
      const prompts = offers.prompts ? await client.listPrompts(undefined, { timeout: CONNECT_TIMEOUT_MS }) : undefined;
      if (this.closed) throw new Error("detached while connecting");
      session = new UpstreamSession(client);
      const started = session;
      const deliver = transport.onmessage;
      transport.onmessage = (message, extra) => {
        if (!started.takeProgress(message)) deliver?.(message, extra);
      };
      this.session = session;
      const server = client.getServerVersion();
      this.server = server ? { name: server.name, version: server.version } : undefined;
      this.namespace ??= namespaceOf(server?.name);
      this.tools = listed.tools;
      this.prompts = prompts?.prompts ?? [];
      this.resources = offers.resources !== undefined;
      this.logger.info(
        {
          upstream: this.label,
          server: this.server,
          protocol: client.getNegotiatedProtocolVersion(),
          tools: this.tools.length,
          prompts: this.prompts.length,
          resources: this.resources,
          server_pid: transport instanceof StdioClientTransport ? transport.pid : undefined,
        },
        "MCP upstream connected",
      );
      this.firstUp();
      this.onListsChanged();
    } catch (err) {
      session = undefined;
      await client.close().catch(() => undefined);
      if (this.closed) return;
      this.downReason = `connecting failed: ${(err as Error)?.message ?? String(err)}`;
      this.logger.warn(
        {
          upstream: this.label,
          err: (err as Error)?.message ?? String(err),
          retry_ms: this.retryMs,
          stderr: this.stderr(),
        },
        "MCP upstream could not connect; trying again",
      );
      this.retryLater();
    }
  }

  private transport(): Transport {
    const spec = this.spec.transport;
    if (spec.kind === "http") {
      return new StreamableHTTPClientTransport(spec.url, { requestInit: { headers: spec.headers } });
    }
    const transport = new StdioClientTransport({
      command: spec.command,
      args: spec.args,
      env: { ...getDefaultEnvironment(), ...spec.env },
      ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
      stderr: "pipe",
    });
    let partial = "";
    transport.stderr?.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") continue;
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_LINES_KEPT) this.stderrTail.shift();
        this.logger.debug({ upstream: this.label, line }, "MCP upstream stderr");
      }
    });
    return transport;
  }

  private stderr(): string[] | undefined {
    return this.spec.transport.kind === "stdio" && this.stderrTail.length > 0 ? [...this.stderrTail] : undefined;
  }

  private listChanged(
    session: UpstreamSession,
    err: Error | null,
    changed: { tools?: Tool[] | null; prompts?: Prompt[] | null },
  ): void {
    if (session !== this.session) return;
    const list = changed.tools ?? changed.prompts;
    if (err || !list) {
      this.logger.warn(
        { upstream: this.label, err: err?.message, list: changed.tools === undefined ? "prompts" : "tools" },
        "MCP upstream list could not be read again",
      );
      return;
    }
    if (changed.tools) this.tools = changed.tools;
    if (changed.prompts) this.prompts = changed.prompts;
    this.onListsChanged();
  }

  /**
   * Something went wrong on the connection. A child process's end is reported by its close event; an HTTP
   * server's death is not (the SDK keeps retrying its event stream while requests wait for their timeout), so an
   * HTTP connection in doubt is checked with a ping, and taken for lost when the server does not answer it.
   */
  private doubt(session: UpstreamSession, err: unknown): void {
    if (session !== this.session) return;
    this.logger.debug({ upstream: this.label, err: (err as Error)?.message ?? String(err) }, "MCP upstream error");
    if (this.spec.transport.kind !== "http" || this.probing) return;
    this.probing = true;
    session.client
      .ping({ timeout: PROBE_TIMEOUT_MS })
      .catch((failure: unknown) =>
        this.lost(session, `it did not answer a ping: ${(failure as Error)?.message ?? String(failure)}`),
      )
      .finally(() => (this.probing = false));
  }

  private lost(session: UpstreamSession, reason: string): void {
    if (session !== this.session) return;
    this.session = undefined;
    this.downReason = reason;
    const upMs = Date.now() - session.since;
    if (upMs >= STABLE_MS) this.retryMs = RETRY_FIRST_MS;
    session.failAll(
      new MigError("MIG_UNAVAILABLE", `MCP server ${this.label} went away during the call (${reason}); try again`, {
        details: { upstream: this.label },
      }),
    );
    void session.client.close().catch(() => undefined);
    if (this.closed) return;
    this.logger.warn(
      { upstream: this.label, reason, up_ms: upMs, retry_ms: this.retryMs, stderr: this.stderr() },
      "MCP upstream lost; connecting again",
    );
    this.retryLater();
  }

  private retryLater(): void {
    const pause = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.nextAttemptAt = Date.now() + pause;
    this.retryTimer = setTimeout(() => void this.connect(), pause);
  }
}

/**
 * The namespace of a server that was given none: the last `/`-separated part of the name it reports, with every
 * character outside letters, digits, `-` and `_` turned into `-` ("mcp-servers/everything" → "everything").
 */
export function namespaceOf(serverName: string | undefined): string {
  const last = (serverName ?? "").split("/").pop() ?? "";
  const cleaned = last
    .replace(/[^A-Za-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
  return cleaned === "" ? "mcp" : cleaned;
}
