// The admin console's live feed: its snapshot pushed as Server-Sent Events about once a second, by one timer for all
// listeners of a runtime, and only while someone listens.
import type { ServerResponse } from "node:http";
import type { AdminView, MigRuntime } from "../../runtime/mod.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import { type ConsoleScope, consoleSnapshots, scopeKey } from "./console-snapshot.ts";

/** The pause between the end of one round of snapshots and the start of the next. */
export const PUSH_EVERY_MS = 1_000;
/** Listeners of one process at once: each costs a snapshot a second when its scope is its own. */
export const MAX_LISTENERS = 100;
/**
 * A feed ends after this long and the page connects again: its credential is checked when a feed opens, so an
 * expired or revoked token stops showing data within this time.
 */
export const FEED_LIFETIME_MS = 10 * 60_000;
/** A listener that has not taken this much of what was sent misses snapshots until it has. */
const SLOW_READER_BYTES = 1024 * 1024;

interface Listener {
  res: ServerResponse;
  view: AdminView;
  scope: ConsoleScope;
}

/**
 * The listeners of one runtime. A round makes one snapshot per distinct scope (every operator without a tenant
 * filter shares one), encodes it once and writes it to each listener of that scope; the next round is scheduled when
 * this one has ended, so a slow round never overlaps the next. No listener, no timer.
 */
class ConsoleFeed {
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly runtime: MigRuntime) {}

  get size(): number {
    return this.listeners.size;
  }

  add(listener: Listener): void {
    this.listeners.add(listener);
    const lifetime = setTimeout(() => listener.res.end(), FEED_LIFETIME_MS);
    lifetime.unref();
    listener.res.on("close", () => {
      clearTimeout(lifetime);
      this.listeners.delete(listener);
    });
    // A new listener gets its first snapshot now, unless a round is under way (then from the next one).
    if (!this.running) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.round();
    }
  }

  private async round(): Promise<void> {
    this.running = true;
    try {
      const byScope = new Map<string, Listener[]>();
      for (const listener of this.listeners) {
        const key = scopeKey(listener.scope);
        const group = byScope.get(key);
        if (group) group.push(listener);
        else byScope.set(key, [listener]);
      }
      for (const group of byScope.values()) await this.push(group);
    } finally {
      this.running = false;
      if (this.listeners.size > 0) {
        this.timer = setTimeout(() => void this.round(), PUSH_EVERY_MS);
        this.timer.unref();
      } else this.timer = undefined;
    }
  }

  private async push(group: Listener[]): Promise<void> {
    const first = group[0]!;
    let frame: string;
    try {
      const snapshot = await consoleSnapshots(this.runtime).snapshot(first.view, first.scope);
      frame = `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
    } catch (err) {
      const error = toMigError(err, "the console snapshot could not be made; the runtime log has the cause");
      if (!(err instanceof MigError)) this.runtime.logger.error({ err: String(err) }, "console snapshot failed");
      frame = `event: mig-error\ndata: ${JSON.stringify({ error: error.toJSON() })}\n\n`;
    }
    for (const { res } of group) {
      if (res.destroyed || res.writableEnded) continue;
      if (res.writableLength > SLOW_READER_BYTES) continue;
      res.write(frame);
    }
  }
}

const feeds = new WeakMap<MigRuntime, ConsoleFeed>();

/**
 * Answers GET /admin/v0.1/console/events: an SSE stream of `snapshot` events (and `mig-error` when one could not be
 * made) until the client goes. The caller has been authorized and its scope read from the query already.
 */
export function serveConsoleEvents(
  runtime: MigRuntime,
  res: ServerResponse,
  view: AdminView,
  scope: ConsoleScope,
): void {
  let feed = feeds.get(runtime);
  if (!feed) feeds.set(runtime, (feed = new ConsoleFeed(runtime)));
  if (feed.size >= MAX_LISTENERS) {
    throw new MigError(
      "MIG_BACKPRESSURE",
      `this process already feeds ${MAX_LISTENERS} consoles; close one, or read GET /admin/v0.1/console/snapshot`,
      { details: { retry_after_ms: 5_000 } },
    );
  }
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.write(`retry: 3000\n: console feed, a snapshot every ${PUSH_EVERY_MS} ms\n\n`);
  feed.add({ res, view, scope });
}
