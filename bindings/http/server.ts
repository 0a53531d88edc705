// The HTTP binding: parses requests, authenticates once, hands the body to the runtime, writes the answer.
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { MigError } from "../../runtime/errors.ts";
import type { Authenticator } from "../../runtime/auth.ts";
import type { AdminView } from "../../runtime/policy.ts";
import type { MigRuntime } from "../../runtime/runtime.ts";
import { readJsonBody } from "./body.ts";
import { listenOn } from "./listen.ts";
import { sendError, sendJson } from "./respond.ts";
import { matchRoute } from "./routes.ts";
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

export async function startHttpBinding(runtime: MigRuntime, authenticator: Authenticator, addr: string): Promise<HttpBinding> {
  const limit = runtime.config.maxBodyBytes;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const tenant = firstValue(req.headers["x-tenant-id"]);
    const match = matchRoute(req.method ?? "GET", path);
    if (!match.found) {
      req.resume();
      if (match.allowed) {
        const error = new MigError("MIG_INVALID_REQUEST", `${path} accepts ${match.allowed.join(", ")}, not ${req.method}`);
        return sendError(res, error, undefined, tenant, { status: 405, headers: { allow: match.allowed.join(", ") } });
      }
      return sendError(res, new MigError("MIG_NOT_FOUND", `no MIG route ${req.method} ${path}; see docs/bindings/http.md`), undefined, tenant);
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
        if (route.guard === "admin" || route.guard === "operator" || (route.guard === "metrics" && runtime.policy.metricsProtected)) {
          view = runtime.authorizeAdmin(await authenticator.authenticate(credentials), `${req.method} ${path}`, route.guard !== "admin");
        }
        return await route.run(runtime, req, res, view);
      } catch (err) {
        req.resume();
        return sendError(res, err, undefined, tenant);
      }
    }
    if (route.kind === "stream") {
      req.resume();
      let principal;
      try {
        principal = await authenticator.authenticate(credentials);
      } catch (err) {
        return sendError(res, err, undefined, tenant);
      }
      return route.run(runtime, req, res, { principal, tenant, binding: "http" }, match.param);
    }

    let body: unknown;
    try {
      const principal = await authenticator.authenticate(credentials);
      const parsed = await readJsonBody(req, limit);
      body = parsed.value;
      mergeHeaderFields(req, body);
      const context = { principal, tenant, binding: "http" as const, bodyBytes: parsed.bytes };
      if (route.streams && wantsStream(body)) return serveStream(runtime, res, body, context, match.param);
      const answer = await route.run(runtime, body, context, match.param);
      sendJson(res, 200, answer);
    } catch (err) {
      if (!(err instanceof MigError)) runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "HTTP handler failed");
      sendError(res, err, body, tenant);
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
  const server: Server = tls
    ? createTlsServer({ cert: readFileSync(httpTlsCert!), key: readFileSync(httpTlsKey!) }, onRequest)
    : createServer(onRequest);
  server.keepAliveTimeout = 65_000;
  const streams = attachStreamEndpoint(server, runtime, authenticator);
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
