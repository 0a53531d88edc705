// The HTTP binding: parses requests, authenticates once, hands the body to the runtime, writes the answer.
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import {
  type AdminView,
  type Authenticator,
  CallerGone,
  type MigRuntime,
  type Principal,
  type RequestContext,
} from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import { checkBodyHeaders, drainBody, readJsonBody } from "./body.ts";
import { ConnectionCensus } from "./connection-census.ts";
import { deprecationHeaders } from "./deprecation-headers.ts";
import { listenOn } from "./listen.ts";
import type { AdminHooks, ListenerSelf } from "./listener-self.ts";
import { sendError, sendJson } from "./respond.ts";
import { matchRoute } from "./routes.ts";
import { SelfCheckState } from "./self-check.ts";
import { answerClientErrors, guardConnections, serverOptions, tooManyConnections } from "./server-limits.ts";
import { serveStream, wantsStream } from "./stream-sse.ts";
import { attachStreamEndpoint } from "./websocket.ts";

/** What a mounted handler gets from the binding besides the request: its body, read within the binding's limits. */
export interface MountedRequest {
  /** Reads the body as JSON within the binding's limits (content-type, MIG_MAX_BODY_BYTES, nesting depth). */
  readJson(): Promise<{ value: unknown; bytes: number }>;
  /** Reads and discards what is left of a refused body (within MIG_HTTP_DRAIN_BYTES); false: close the connection. */
  discardBody(): Promise<boolean>;
}

/**
 * A handler another binding serves on this listener (the MCP endpoint at /mcp): it gets the raw request and
 * authenticates it itself. The composition root mounts it, so that this binding imports no other.
 */
export type MountedHandler = (req: IncomingMessage, res: ServerResponse, request: MountedRequest) => Promise<void>;

export interface HttpBinding {
  server: Server;
  url: string;
  /** Serves `handler` at exactly `path` (any method), before the MIG routes are looked at. */
  mount(path: string, handler: MountedHandler): void;
  /** What the composition root knows of the rest of the process, for the admin routes (bindings/http/listener-self.ts). */
  setAdminHooks(hooks: AdminHooks): void;
  /**
   * Stops accepting connections and closes idle ones; requests being answered get up to `graceMs` to finish (a
   * gateway that drains), then every connection is closed. WebSocket streams end at once.
   */
  close(graceMs?: number): Promise<void>;
}

/** HTTP headers that may carry MIG header fields; a field in the body's header takes precedence. */
const HEADER_FIELDS: [httpName: string, field: string][] = [
  ["traceparent", "traceparent"],
  ["idempotency-key", "idempotency_key"],
  ["x-session-id", "session_id"],
];

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function mergeHeaderFields(req: IncomingMessage, body: unknown): void {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return;
  for (const [httpName, field] of HEADER_FIELDS) {
    const value = firstValue(req.headers[httpName]);
    if (value === undefined) continue;
    const target = body as { header?: unknown };
    if (target.header === undefined || target.header === null) target.header = {};
    if (typeof target.header !== "object" || Array.isArray(target.header)) return;
    const header = target.header as Record<string, unknown>;
    if (header[field] === undefined || header[field] === "") header[field] = value;
  }
}

const MIG_PREFIX = "/mig/v0.1/";

/** The operation a path names, for the audit record of a refused credential (made per request: no split). */
function operationOf(path: string): string {
  if (!path.startsWith(MIG_PREFIX)) return path.slice(0, 100);
  const end = path.indexOf("/", MIG_PREFIX.length);
  return end === -1 ? path.slice(MIG_PREFIX.length) : path.slice(MIG_PREFIX.length, end);
}

export async function startHttpBinding(
  runtime: MigRuntime,
  authenticator: Authenticator,
  addr: string,
): Promise<HttpBinding> {
  const { config } = runtime;
  const bodyLimits = { maxBytes: config.maxBodyBytes, maxDepth: config.maxJsonDepth };
  /** Requests that sent `Expect: 100-continue` and have not been told to go on: their body is not on its way. */
  const awaitingContinue = new WeakSet<IncomingMessage>();
  const mounts = new Map<string, MountedHandler>();
  const self: ListenerSelf = {
    census: new ConnectionCensus(),
    selfCheck: new SelfCheckState((err) =>
      runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "the conformance self-check failed to run"),
    ),
    natsBinding: false,
  };

  function mountedRequest(req: IncomingMessage, res: ServerResponse): MountedRequest {
    return {
      async readJson() {
        checkBodyHeaders(req, bodyLimits.maxBytes);
        if (awaitingContinue.delete(req)) res.writeContinue();
        return readJsonBody(req, bodyLimits);
      },
      discardBody: () => (awaitingContinue.has(req) ? Promise.resolve(false) : drainBody(req, config.httpDrainBytes)),
    };
  }

  /**
   * Answers a refused request once what is left of its body has been read and discarded (within
   * MIG_HTTP_DRAIN_BYTES), so that the client reads the answer instead of a reset; a larger body, or one
   * the client has not started sending, gets the answer with `connection: close`.
   */
  async function answerError(
    req: IncomingMessage,
    res: ServerResponse,
    err: unknown,
    body: unknown,
    tenant: string | undefined,
    override: { status?: number; headers?: Record<string, string>; close?: boolean } = {},
  ): Promise<void> {
    const drained = awaitingContinue.has(req) ? false : await drainBody(req, config.httpDrainBytes);
    sendError(res, err, body, tenant, { ...override, close: override.close || !drained });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const tenant = firstValue(req.headers["x-tenant-id"]);
    if (connections.refused(req.socket)) {
      return answerError(req, res, tooManyConnections(config.httpMaxConnections), undefined, tenant, { close: true });
    }
    const mounted = mounts.get(path);
    if (mounted) return mounted(req, res, mountedRequest(req, res));
    const match = matchRoute(req.method ?? "GET", path);
    if (!match.found) {
      if (match.allowed) {
        const error = new MigError(
          "MIG_INVALID_REQUEST",
          `${path} accepts ${match.allowed.join(", ")}, not ${req.method}`,
        );
        return answerError(req, res, error, undefined, tenant, {
          status: 405,
          headers: { allow: match.allowed.join(", ") },
        });
      }
      return answerError(
        req,
        res,
        new MigError("MIG_NOT_FOUND", `no MIG route ${req.method} ${path}; see docs/bindings/http.md`),
        undefined,
        tenant,
      );
    }
    const { route } = match;
    const credentials = {
      authorization: firstValue(req.headers.authorization),
      actor: firstValue(req.headers["x-actor"]),
      binding: "http" as const,
      tenant,
      operation: operationOf(path),
    };
    if (route.kind === "raw") {
      try {
        if (route.guard === "metrics" && runtime.config.metricsAddr) {
          throw new MigError("MIG_NOT_FOUND", "/metrics is served on its own listener (MIG_METRICS_ADDR)");
        }
        let view: AdminView = { tenant: undefined };
        if (
          route.guard === "admin" ||
          route.guard === "operator" ||
          (route.guard === "metrics" && runtime.policy.metricsProtected)
        ) {
          view = runtime.authorizeAdmin(
            await authenticator.authenticate(credentials),
            `${req.method} ${path}`,
            route.guard !== "admin",
          );
        }
        return await route.run(runtime, req, res, view, self);
      } catch (err) {
        return answerError(req, res, err, undefined, tenant);
      }
    }
    if (route.kind === "stream") {
      req.resume();
      let principal: Principal;
      try {
        principal = await authenticator.authenticate(credentials);
      } catch (err) {
        sendError(res, err, undefined, tenant);
        return;
      }
      return route.run(runtime, req, res, { principal, tenant, binding: "http" }, match.param);
    }

    let body: unknown;
    try {
      const principal = await authenticator.authenticate(credentials);
      checkBodyHeaders(req, bodyLimits.maxBytes);
      if (awaitingContinue.delete(req)) res.writeContinue();
      const parsed = await readJsonBody(req, bodyLimits);
      body = parsed.value;
      mergeHeaderFields(req, body);
      // The client is gone already: there is no one to answer, so nothing is run.
      if (res.destroyed || req.socket.destroyed) return;
      const context: RequestContext = { principal, tenant, binding: "http", bodyBytes: parsed.bytes };
      if (route.streams && wantsStream(body)) return serveStream(runtime, res, body, context, match.param);
      // A client that closes the connection before the answer has gone: the runtime cancels its invocation.
      const gone = new CallerGone();
      const onClose = () => {
        if (!res.writableEnded) gone.abort("the HTTP client closed the connection before the answer");
      };
      context.gone = gone;
      res.once("close", onClose);
      let answer: unknown;
      try {
        answer = await route.run(runtime, body, context, match.param);
      } finally {
        res.off("close", onClose);
      }
      const failed = sendJson(res, 200, answer, deprecationHeaders(answer));
      if (failed !== undefined)
        runtime.logger.error({ err: String(failed), path }, "an answer could not be encoded as JSON");
    } catch (err) {
      if (!(err instanceof MigError))
        runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "HTTP handler failed");
      await answerError(req, res, err, body, tenant);
    }
  }

  /** Requests being answered (for a draining close), and who waits for there to be none. */
  let answering = 0;
  let whenIdle: (() => void) | undefined;
  const answered = () => {
    if (--answering === 0) whenIdle?.();
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    answering++;
    handle(req, res)
      .catch((err) => {
        runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "HTTP request failed");
        if (!res.headersSent) sendError(res, err, undefined, undefined);
        else res.destroy();
      })
      .then(answered);
  };
  const { httpTlsCert, httpTlsKey } = runtime.config;
  const tls = Boolean(httpTlsCert && httpTlsKey);
  const options = serverOptions(config);
  const server: Server = tls
    ? createTlsServer(
        {
          ...options,
          cert: readFileSync(httpTlsCert!),
          key: readFileSync(httpTlsKey!),
          handshakeTimeout: options.headersTimeout,
        },
        onRequest,
      )
    : createServer(options, onRequest);
  const connections = guardConnections(server, config, tls);
  self.census.watch(server, tls);
  answerClientErrors(server, runtime.logger);
  // A client that asks before it sends its body is told to go on only once the body is wanted: a refused
  // request (too large, not JSON, no credential) is answered before a byte of it is sent.
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(req);
    onRequest(req, res);
  });
  const streams = attachStreamEndpoint(server, runtime, authenticator, connections);
  const bound = await listenOn(server, addr);
  return {
    server,
    url: `${tls ? "https" : "http"}://${bound}`,
    mount(path, handler) {
      mounts.set(path, handler);
    },
    setAdminHooks(hooks) {
      if (hooks.selfCheck) self.selfCheck.use(hooks.selfCheck);
      if (hooks.natsBinding !== undefined) self.natsBinding = hooks.natsBinding;
    },
    async close(graceMs = 0) {
      streams.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (graceMs > 0 && answering > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((resolve) => (whenIdle = resolve)),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
        ]);
        clearTimeout(timer);
      }
      server.closeAllConnections();
      await closed;
    },
  };
}
