// The admin console's routes: the page at /console (static files, no data), its snapshot and its live feed.
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AdminView, MigRuntime } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import { serveConsoleEvents } from "./console-events.ts";
import { consoleScope, consoleSnapshots, parseConsoleQuery } from "./console-snapshot.ts";
import { sendJson } from "./respond.ts";

/** The page's files, by the path they are served at: one HTML shell, one script, one style sheet, in console/. */
const CONSOLE_FILES: Record<string, { file: string; type: string }> = {
  "/console": { file: "index.html", type: "text/html; charset=utf-8" },
  "/console/console.js": { file: "console.js", type: "text/javascript; charset=utf-8" },
  "/console/console.css": { file: "console.css", type: "text/css; charset=utf-8" },
};

/**
 * The page loads only its own script and style sheet and talks only to this origin; nothing inline runs, no other
 * page may frame it. Its data comes from the guarded routes below, never from the shell.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** File contents, read once: they ship with the runtime and do not change while it runs. */
const cache = new Map<string, Promise<Buffer>>();

function contents(file: string): Promise<Buffer> {
  let known = cache.get(file);
  if (!known) {
    known = readFile(new URL(`./console/${file}`, import.meta.url));
    known.catch(() => cache.delete(file));
    cache.set(file, known);
  }
  return known;
}

/** GET /console and its two files: public, as they hold no data (the page asks for a token before it shows any). */
export async function serveConsoleFile(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? "/", "http://x").pathname;
  const entry = CONSOLE_FILES[path];
  if (!entry) throw new MigError("MIG_NOT_FOUND", `no console file at ${path}`);
  const body = await contents(entry.file).catch(() => {
    throw new MigError("MIG_UNAVAILABLE", `the console's file ${entry.file} is missing from this installation`);
  });
  res.writeHead(200, {
    "content-type": entry.type,
    "content-length": body.length,
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
  });
  res.end(body);
}

/** GET /admin/v0.1/console/snapshot: one aggregated view, as JSON (docs/console.md). */
export async function serveConsoleSnapshot(
  runtime: MigRuntime,
  req: IncomingMessage,
  res: ServerResponse,
  view: AdminView,
): Promise<void> {
  const scope = consoleScope(runtime, view, parseConsoleQuery(new URL(req.url ?? "/", "http://x").searchParams));
  sendJson(res, 200, await consoleSnapshots(runtime).snapshot(view, scope), { "cache-control": "no-store" });
}

/** GET /admin/v0.1/console/events: the same snapshot as SSE, about once a second (bindings/http/console-events.ts). */
export async function serveConsoleFeed(
  runtime: MigRuntime,
  req: IncomingMessage,
  res: ServerResponse,
  view: AdminView,
): Promise<void> {
  const scope = consoleScope(runtime, view, parseConsoleQuery(new URL(req.url ?? "/", "http://x").searchParams));
  serveConsoleEvents(runtime, res, view, scope);
}
