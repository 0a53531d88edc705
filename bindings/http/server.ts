// The HTTP binding: parses requests, authenticates once, hands the body to the runtime, writes the answer.
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Authenticator } from "../../runtime/auth.ts";
import type { RequestContext } from "../../runtime/core.ts";
import { MigError } from "../../runtime/errors.ts";
import type { AdminView } from "../../runtime/policy.ts";
import type { Principal } from "../../runtime/principal.ts";
import type { MigRuntime } from "../../runtime/runtime.ts";
import { checkBodyHeaders, drainBody, readJsonBody } from "./body.ts";
import { listenOn } from "./listen.ts";
import { sendError, sendJson } from "./respond.ts";
import { matchRoute } from "./routes.ts";
import { answerClientErrors, guardConnections, serverOptions, tooManyConnections } from "./server-limits.ts";
import { serveStream, wantsStream } from "./stream-sse.ts";
import { attachStreamEndpoint } from "./websocket.ts";

export interface HttpBinding {
  server: Server;
  url: string;
  close(): Promise<void>;
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

  /**
   * A unary INVOKE whose client closes the connection before the answer is cancelled through the runtime,
   * as over gRPC: the provider's signal fires and the invocation's place in the capacity is freed at once.
   */
  async function cancelIfAbandoned<T>(
    pending: Promise<T>,
    res: ServerResponse,
    body: unknown,
    context: RequestContext,
  ): Promise<T> {
    let settled = false;
    const onClose = () => {
      if (!settled && !res.writableEnded) void cancelAbandoned(body, context, () => settled);
    };
    res.once("close", onClose);
    try {
      return await pending;
    } finally {
      settled = true;
      res.off("close", onClose);
    }
  }

  async function cancelAbandoned(body: unknown, context: RequestContext, settled: () => boolean): Promise<void> {
    // The runtime wrote the normalized header (with its message_id) back into `body` when it accepted it.
    const header = (body as { header?: Record<string, unknown> }).header;
    if (typeof header?.message_id !== "string") return;
    const cancel = {
      header: { tenant_id: header.tenant_id },
      target_message_id: header.message_id,
      reason: "the HTTP client closed the connection before the answer",
    };
    // The invocation may not be registered yet (its idempotency claim still on the bus): try again while it is pending.
    for (let attempt = 0; attempt < 5 && !settled(); attempt++) {
      try {
        if ((await runtime.cancel(cancel, { ...context })).status !== "not_found") return;
      } catch (err) {
        runtime.logger.debug(
          { err: String(err), message_id: header.message_id },
          "cancel after a closed HTTP connection failed",
        );
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const tenant = firstValue(req.headers["x-tenant-id"]);
    if (connections.refused(req.socket)) {
      return answerError(req, res, tooManyConnections(config.httpMaxConnections), undefined, tenant, { close: true });
    }
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
        return await route.run(runtime, req, res, view);
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
      const context = { principal, tenant, binding: "http" as const, bodyBytes: parsed.bytes };
      if (route.streams && wantsStream(body)) return serveStream(runtime, res, body, context, match.param);
      const running = route.run(runtime, body, context, match.param);
      const answer = await (operationOf(path) === "invoke" ? cancelIfAbandoned(running, res, body, context) : running);
      const failed = sendJson(res, 200, answer);
      if (failed !== undefined)
        runtime.logger.error({ err: String(failed), path }, "an answer could not be encoded as JSON");
    } catch (err) {
      if (!(err instanceof MigError))
        runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "HTTP handler failed");
      await answerError(req, res, err, body, tenant);
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err) => {
      runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "HTTP request failed");
      if (!res.headersSent) sendError(res, err, undefined, undefined);
      else res.destroy();
    });
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
    close: () =>
      new Promise<void>((resolve) => {
        streams.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
