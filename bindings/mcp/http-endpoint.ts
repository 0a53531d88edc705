// /mcp on the HTTP listener: MCP Streamable HTTP, stateless. Each request is authenticated like any HTTP request
// (Authorization: Bearer, X-Tenant-ID), read within the HTTP binding's limits, then served by a fresh SDK server
// instance for its caller (both protocol revisions: 2025-11-25 and 2026-07-28); nothing is kept between requests.
import type { IncomingMessage, ServerResponse } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import {
  type AuthInfo,
  CLIENT_INFO_META_KEY,
  createMcpHandler,
  type McpServerFactory,
} from "@modelcontextprotocol/server";
import { type Authenticator, checkTenant, type MigRuntime, type Principal } from "../../runtime/mod.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import type { HelloResponse } from "../../schemas/types.ts";
import { errorData, errorResponse, INVALID_REQUEST, JSON_RPC_CODE, PARSE_ERROR } from "./json-rpc-errors.ts";
import { McpSurface } from "./manifest.ts";
import type { ClientIdentity } from "./mcp-call.ts";
import { buildMcpServer } from "./mcp-server.ts";
import {
  bearerChallenge,
  MCP_PATH,
  METADATA_PATH,
  type ProtectedResourceOptions,
  serveMetadata,
} from "./protected-resource.ts";
import { RuntimeBackend } from "./runtime-backend.ts";

/** The body reader the HTTP binding lends a mounted handler (bindings/http/server.ts MountedRequest). */
export interface MountedRequest {
  readJson(): Promise<{ value: unknown; bytes: number }>;
  discardBody(): Promise<boolean>;
}
export type MountedHandler = (req: IncomingMessage, res: ServerResponse, request: MountedRequest) => Promise<void>;
/** Where the endpoint is mounted: the HTTP binding's `mount` (the composition root passes the binding). */
export interface MountPoint {
  mount(path: string, handler: MountedHandler): void;
}

export interface McpEndpointOptions {
  /** The manifest's names, or the default rule (bindings/mcp/manifest.ts). */
  surface?: McpSurface | undefined;
  resourceUrl?: string | undefined;
  authorizationServers?: string[] | undefined;
}

export interface McpEndpoint {
  /**
   * Aborts the 2026-era exchanges being served (their invocations are cancelled). A draining gateway needs no call:
   * its HTTP binding lets /mcp requests finish like any other, then closes their sockets.
   */
  close(): Promise<void>;
}

/** Who calls, as the request's authentication established it; handed to the SDK's factory through `authInfo.extra`. */
interface Caller {
  principal: Principal;
  tenant: string;
  hello?: HelloResponse | undefined;
  client?: ClientIdentity | undefined;
}
const CALLER = "mig.caller";

const OPENING_METHODS = new Set(["initialize", "server/discover"]);

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Mounts /mcp and its protected-resource metadata (jwt mode) on the HTTP binding. */
export function mountMcpEndpoint(
  http: MountPoint,
  runtime: MigRuntime,
  authenticator: Authenticator,
  options: McpEndpointOptions = {},
): McpEndpoint {
  const surface = options.surface ?? new McpSurface();
  const protectedResource: ProtectedResourceOptions = {
    resourceUrl: options.resourceUrl,
    authorizationServers: options.authorizationServers ?? [],
  };
  const jwt = authenticator.mode === "jwt";
  const onerror = (error: Error) => runtime.logger.debug({ err: error.message }, "MCP request failed");

  const factory: McpServerFactory = (ctx) => {
    const caller = ctx.authInfo?.extra?.[CALLER] as Caller | undefined;
    if (!caller) throw new Error("an MCP request reached the server without its authenticated caller");
    // A 2025-era request's cancellation arrives as a separate POST, perhaps at another gateway: message ids are
    // made from request ids so that it finds the call (bindings/mcp/correlation.ts).
    const legacy = ctx.era === "legacy";
    const backend = new RuntimeBackend(runtime, caller.principal, caller.tenant, legacy);
    return buildMcpServer({
      backend,
      surface,
      hello: caller.hello,
      client: caller.client,
      cancelByNotification: legacy,
      onerror,
    });
  };
  const sdk = createMcpHandler(factory, {
    legacy: "stateless",
    onerror,
    maxRequestBodySize: runtime.config.maxBodyBytes,
  });
  const serve = toNodeHandler(sdk, { onerror, maxRequestBodySize: runtime.config.maxBodyBytes });

  /** A MIG refusal before the SDK sees the request: the standard's JSON-RPC code, the HTTP status of the binding. */
  function refuse(req: IncomingMessage, res: ServerResponse, request: MountedRequest, err: unknown, status: number) {
    const error = toMigError(err);
    const headers: Record<string, string> = {};
    if (error.code === "MIG_UNAUTHORIZED" && jwt)
      headers["www-authenticate"] = bearerChallenge(req, protectedResource, error.message);
    const body = errorResponse(null, JSON_RPC_CODE[error.code], error.message, errorData(error));
    return answer(res, request, status, body, headers);
  }

  const handle: MountedHandler = async (req, res, request) => {
    const named = firstValue(req.headers["x-tenant-id"]);
    let principal: Principal;
    try {
      principal = await authenticator.authenticate({
        authorization: firstValue(req.headers.authorization),
        actor: firstValue(req.headers["x-actor"]),
        binding: "http",
        tenant: named,
        operation: "mcp",
      });
    } catch (err) {
      return refuse(req, res, request, err, 401);
    }
    let tenant: string | undefined;
    try {
      tenant = runtime.connectionTenant({ principal, tenant: named, binding: "http" }, "mcp");
      if (tenant === undefined)
        throw new MigError("MIG_INVALID_REQUEST", "name your tenant: send the X-Tenant-ID header (auth mode none)");
      checkTenant(tenant, "X-Tenant-ID");
    } catch (err) {
      const error = toMigError(err);
      return refuse(req, res, request, error, error.code === "MIG_FORBIDDEN" ? 403 : 400);
    }

    let body: unknown;
    if (req.method === "POST") {
      try {
        body = (await request.readJson()).value;
      } catch (err) {
        return refuseBody(res, request, err);
      }
      if (Array.isArray(body)) {
        const message = "JSON-RPC batches are not part of MCP (since 2025-06-18): send one request per POST";
        return answer(res, request, 400, errorResponse(null, INVALID_REQUEST, message));
      }
    }
    const caller: Caller = { principal, tenant };
    const opening = openingOf(body);
    if (opening) {
      caller.client = opening.client;
      // MCP's handshake is MIG's: HELLO for the caller (version, tenant, audit) before the SDK answers it.
      try {
        const backend = new RuntimeBackend(runtime, principal, tenant, false);
        caller.hello = await backend.hello({
          method: opening.method,
          requestId: opening.id ?? undefined,
          clientName: opening.client?.name,
        });
      } catch (err) {
        const error = toMigError(err);
        // The handshake's own answer: a JSON-RPC error, as the SDK would send one.
        return answer(
          res,
          request,
          200,
          errorResponse(opening.id, JSON_RPC_CODE[error.code], error.message, errorData(error)),
        );
      }
    }
    const auth: AuthInfo = {
      // Never the caller's token: nothing after this point needs it, and providers must never see it.
      token: "",
      clientId: principal.subject,
      scopes: [...principal.scopes],
      extra: { [CALLER]: caller },
    };
    leaveKeepAliveToNode(res);
    await serve(Object.assign(req, { auth }), res, body);
  };

  http.mount(MCP_PATH, handle);
  const metadata: MountedHandler = async (req, res, request) => {
    if (!jwt) {
      return answer(res, request, 404, {
        error: "not_found",
        error_description: "this gateway runs in auth mode none: /mcp needs no token",
      });
    }
    serveMetadata(req, res, protectedResource);
  };
  http.mount(METADATA_PATH, metadata);
  http.mount(`${METADATA_PATH}${MCP_PATH}`, metadata);

  return {
    close: () => sdk.close(),
  };
}

/**
 * Keeps the SDK's `Connection` header out of the answer: Node decides whether a socket stays open (it closes it after
 * MIG_HTTP_MAX_REQUESTS_PER_SOCKET requests, or when the server stops), and the `Connection: keep-alive` the SDK puts
 * on its SSE answers would override that, so the client's next request on that socket would get a bare 503.
 */
function leaveKeepAliveToNode(res: ServerResponse): void {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  res.writeHead = ((...args: unknown[]) => {
    const last = args.at(-1);
    if (last && typeof last === "object" && !Array.isArray(last)) {
      const headers = Object.fromEntries(
        Object.entries(last as Record<string, unknown>).filter(([name]) => name.toLowerCase() !== "connection"),
      );
      args[args.length - 1] = headers;
    }
    return writeHead(...args);
  }) as ServerResponse["writeHead"];
}

/** Writes a JSON answer once what is left of the body is read (within bounds): else the connection closes after it. */
async function answer(
  res: ServerResponse,
  request: MountedRequest,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): Promise<void> {
  const drained = await request.discardBody();
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
    ...(drained ? {} : { connection: "close" }),
  });
  res.end(text);
}

/** A body that failed the binding's limits, as JSON-RPC: too large (413), not JSON (400, parse error), other (400). */
function refuseBody(res: ServerResponse, request: MountedRequest, err: unknown): Promise<void> {
  const error = toMigError(err);
  const details = error.details ?? {};
  const status = details.max_body_bytes !== undefined ? 413 : details.expected_content_type !== undefined ? 415 : 400;
  const code = /not valid JSON/.test(error.message) ? PARSE_ERROR : INVALID_REQUEST;
  return answer(res, request, status, errorResponse(null, code, error.message, errorData(error)));
}

/** The opening request of a client (initialize, server/discover), with the client it names. */
function openingOf(
  body: unknown,
): { method: string; id: string | number | null; client: ClientIdentity | undefined } | undefined {
  if (body === null || typeof body !== "object") return undefined;
  const message = body as {
    method?: unknown;
    id?: unknown;
    params?: { clientInfo?: unknown; _meta?: Record<string, unknown> };
  };
  if (typeof message.method !== "string" || !OPENING_METHODS.has(message.method)) return undefined;
  const id = typeof message.id === "string" || typeof message.id === "number" ? message.id : null;
  const info = (message.params?.clientInfo ?? message.params?._meta?.[CLIENT_INFO_META_KEY]) as
    | ClientIdentity
    | undefined;
  const client =
    info && typeof info === "object"
      ? {
          name: typeof info.name === "string" ? info.name : undefined,
          version: typeof info.version === "string" ? info.version : undefined,
        }
      : undefined;
  return { method: message.method, id, client };
}
