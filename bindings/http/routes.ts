// The HTTP route table: method and path to a runtime operation; path segments are checked by the runtime.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AdminView, MigRuntime, RequestContext } from "../../runtime/mod.ts";
import { registerCapability, registerSchema } from "../../runtime/mod.ts";
import { serveSelfCheck } from "./admin-conformance.ts";
import { serveConnections } from "./admin-connections.ts";
import { checkBodyHeaders, readJsonBody } from "./body.ts";
import { serveConsoleFeed, serveConsoleFile, serveConsoleSnapshot } from "./console-routes.ts";
import type { ListenerSelf } from "./listener-self.ts";
import { sendJson } from "./respond.ts";
import { serveSubscription } from "./sse.ts";

export interface JsonRoute {
  kind: "json";
  /** The route answers with SSE frames when the body asks for a stream (bindings/http/sse.ts). */
  streams?: boolean;
  run: (runtime: MigRuntime, body: unknown, context: RequestContext, param: string | undefined) => Promise<unknown>;
}

export interface RawRoute {
  kind: "raw";
  /**
   * `view` is what a guarded route may show: one tenant's data, or every tenant's; `self` is what the listener knows
   * of itself (its connections, the self-check).
   */
  run: (
    runtime: MigRuntime,
    req: IncomingMessage,
    res: ServerResponse,
    view: AdminView,
    self: ListenerSelf,
  ) => Promise<void>;
  /**
   * In jwt mode, "admin": the admin scope, showing the token's tenant (or every tenant with the cross-tenant
   * scope); "operator": the cross-tenant scope; "metrics": the same unless MIG_METRICS_PUBLIC.
   */
  guard?: "admin" | "operator" | "metrics";
}

/** A long-lived answer (SSE): authenticated by the server like a JSON route, then given the raw response. */
export interface StreamRoute {
  kind: "stream";
  run: (
    runtime: MigRuntime,
    req: IncomingMessage,
    res: ServerResponse,
    context: RequestContext,
    param: string | undefined,
  ) => Promise<void>;
}

export type Route = JsonRoute | RawRoute | StreamRoute;

const PREFIX = "/mig/v0.1/";

/** POST routes of the MIG API: the last path segment, if the route has one, is its parameter. */
const MIG_POST: Record<string, JsonRoute> = {
  hello: { kind: "json", run: (rt, body, ctx) => rt.hello(body, ctx) },
  discover: { kind: "json", run: (rt, body, ctx) => rt.discover(body, ctx) },
  heartbeat: { kind: "json", run: (rt, body, ctx) => rt.heartbeat(body, ctx) },
  invoke: { kind: "json", streams: true, run: (rt, body, ctx, capability) => rt.invoke(body, ctx, capability) },
  cancel: { kind: "json", run: (rt, body, ctx, messageId) => rt.cancel(body, ctx, messageId) },
  publish: { kind: "json", run: (rt, body, ctx, topic) => rt.publish(body, ctx, topic) },
  // POST /mig/v0.1/nats/credentials: the bus user of the token's tenant, for the NATS binding (docs/security.md).
  nats: { kind: "json", run: (rt, body, ctx, what) => rt.natsCredentials(body, ctx, what) },
};
const WITH_PARAM = new Set(["invoke", "cancel", "publish", "nats"]);

/** GET routes of the MIG API that stream; each takes the last path segment as its parameter. */
const MIG_GET: Record<string, StreamRoute> = {
  subscribe: { kind: "stream", run: serveSubscription },
};

const GET: Record<string, RawRoute> = {
  // Liveness: the process answers. Not authenticated, as probes are not.
  "/healthz": {
    kind: "raw",
    run: async (_rt, _req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"status":"live"}');
    },
  },
  // Readiness: the bus and JetStream answer (runtime/bus/readiness.ts); 503 with the failing check otherwise.
  "/readyz": {
    kind: "raw",
    run: async (rt, _req, res) => {
      const state = await rt.readiness();
      res.writeHead(state.ready ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify(state));
    },
  },
  "/metrics": {
    kind: "raw",
    guard: "metrics",
    run: async (rt, _req, res) => {
      const text = await rt.metrics.registry.metrics();
      res.writeHead(200, { "content-type": rt.metrics.registry.contentType });
      res.end(text);
    },
  },
  "/admin/v0.1/capabilities": {
    kind: "raw",
    guard: "admin",
    run: async (rt, _req, res, view) => {
      const capabilities = rt.capabilities.descriptors().filter((d) => rt.policy.adminSees(view, d.id));
      const text = JSON.stringify({ capabilities, schemas: rt.schemas.list() });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(text);
    },
  },
  "/admin/v0.1/actors": {
    kind: "raw",
    // Live actors carry no tenant: only an operator sees them.
    guard: "operator",
    run: async (rt, _req, res) => {
      const text = JSON.stringify({ actors: rt.supervisor.list() });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(text);
    },
  },
  // Live connections by binding and tenant (bindings/http/admin-connections.ts); a tenant's admin sees its tenant's.
  "/admin/v0.1/connections": {
    kind: "raw",
    guard: "admin",
    run: (rt, req, res, view, self) => serveConnections(rt, req, res, view, self),
  },
  // The Core profile of the conformance harness run against this runtime itself (bindings/http/self-check.ts).
  "/admin/v0.1/health/conformance": {
    kind: "raw",
    guard: "admin",
    run: (_rt, req, res, _view, self) => serveSelfCheck(req, res, self.selfCheck),
  },
  // The live console (docs/console.md): a page with no data of its own, fed by the two admin routes after it.
  "/console": { kind: "raw", run: (_rt, req, res) => serveConsoleFile(req, res) },
  "/console/console.js": { kind: "raw", run: (_rt, req, res) => serveConsoleFile(req, res) },
  "/console/console.css": { kind: "raw", run: (_rt, req, res) => serveConsoleFile(req, res) },
  "/admin/v0.1/console/snapshot": { kind: "raw", guard: "admin", run: serveConsoleSnapshot },
  "/admin/v0.1/console/events": { kind: "raw", guard: "admin", run: serveConsoleFeed },
  "/admin/v0.1/audit": {
    kind: "raw",
    guard: "admin",
    run: async (rt, req, res, view) => {
      const answer = await rt.readAudit(new URL(req.url ?? "/", "http://x").searchParams, view);
      const text = JSON.stringify(answer);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(text);
    },
  },
};

/** POST routes of the admin API (the standard's admin OpenAPI): registrations, read within the body limits. */
const ADMIN_POST: Record<string, RawRoute> = {
  "/admin/v0.1/capabilities": {
    kind: "raw",
    // A capability is visible to every tenant: registering one is an operator's act.
    guard: "operator",
    run: async (rt, req, res) => {
      const descriptor = registerCapability(rt, await readAdminBody(rt, req, res));
      sendJson(res, 201, descriptor);
    },
  },
  "/admin/v0.1/schemas": {
    kind: "raw",
    guard: "operator",
    run: async (rt, req, res) => {
      const answer = await registerSchema(rt, await readAdminBody(rt, req, res));
      sendJson(res, 201, answer);
    },
  },
};

/** An admin POST's JSON body, within the binding's limits (MIG_MAX_BODY_BYTES, nesting depth). */
async function readAdminBody(rt: MigRuntime, req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  checkBodyHeaders(req, rt.config.maxBodyBytes);
  if (/100-continue/i.test(req.headers.expect ?? "")) res.writeContinue();
  return (await readJsonBody(req, { maxBytes: rt.config.maxBodyBytes, maxDepth: rt.config.maxJsonDepth })).value;
}

export type RouteMatch =
  | { found: true; route: Route; param: string | undefined }
  | { found: false; allowed: string[] | undefined };

export function matchRoute(method: string, path: string): RouteMatch {
  if (path.startsWith(PREFIX)) {
    const rest = path.slice(PREFIX.length);
    const slash = rest.indexOf("/");
    const name = slash === -1 ? rest : rest.slice(0, slash);
    const streamRoute = MIG_GET[name];
    if (streamRoute) {
      if (slash === -1) return { found: false, allowed: undefined };
      if (method !== "GET") return { found: false, allowed: ["GET"] };
      return { found: true, route: streamRoute, param: safeDecode(rest.slice(slash + 1)) };
    }
    const route = MIG_POST[name];
    if (route) {
      const hasParam = slash !== -1;
      if (hasParam !== WITH_PARAM.has(name)) return { found: false, allowed: undefined };
      if (method !== "POST") return { found: false, allowed: ["POST"] };
      return { found: true, route, param: hasParam ? safeDecode(rest.slice(slash + 1)) : undefined };
    }
  }
  const raw = GET[path];
  const post = ADMIN_POST[path];
  if (raw && method === "GET") return { found: true, route: raw, param: undefined };
  if (post && method === "POST") return { found: true, route: post, param: undefined };
  if (raw || post) return { found: false, allowed: [...(raw ? ["GET"] : []), ...(post ? ["POST"] : [])] };
  return { found: false, allowed: undefined };
}

/** A parameter that cannot be decoded is passed on as is; the runtime's name check then refuses it. */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
