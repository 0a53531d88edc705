// SUBSCRIBE over HTTP: turns GET /mig/v0.1/subscribe/{topic} into a SubscribeRequest and streams the
// subscription as Server-Sent Events (frames and comments documented in docs/events.md).
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type EventSink,
  errorEnvelope,
  type MigRuntime,
  type RequestContext,
  type Subscription,
  type SubscriptionInfo,
} from "../../runtime/mod.ts";
import type { MigError } from "../../schemas/errors.ts";
import { trackExchange } from "./connection-census.ts";
import { sendError } from "./respond.ts";

const KEEPALIVE_MS = 15_000;
const RETRY_MS = 1_000;

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Writes a subscription as SSE: `id: <sequence>`, `event: mig-event`, `data: <EventMessage JSON>`. Frames are gathered
 * into one string and written as one chunk when the pump ends a batch (or the chunk reaches the socket's high-water
 * mark): a `res.write` per event cost three socket buffers each (chunked encoding) and a writev of all of them.
 */
class SseSink implements EventSink {
  private waiters: (() => void)[] = [];
  private ended = false;
  private keepalive: NodeJS.Timeout | undefined;
  private info: SubscriptionInfo | undefined;
  /** Frames gathered and not yet written. */
  private pending = "";

  constructor(private readonly res: ServerResponse) {
    const wake = () => {
      const waiting = this.waiters;
      this.waiters = [];
      for (const w of waiting) w();
    };
    res.on("drain", wake);
    res.on("close", () => {
      this.ended = true;
      wake();
    });
  }

  get gone(): boolean {
    return this.ended;
  }

  get bufferedBytes(): number {
    return this.res.writableLength + this.pending.length;
  }

  open(info: SubscriptionInfo): void {
    this.info = info;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
      "x-mig-subscription-id": info.subscription_id,
    });
    this.res.write(
      `retry: ${RETRY_MS}\n: subscribed topic=${info.topic} subscription_id=${info.subscription_id}` +
        `${info.consumer_id ? ` consumer_id=${info.consumer_id}` : ""} start_sequence=${info.start_sequence}` +
        ` replay_until=${info.replay_until} max_inflight=${info.max_inflight}\n\n`,
    );
    this.keepalive = setInterval(() => this.notice("keepalive", {}), KEEPALIVE_MS);
    this.keepalive.unref();
  }

  event(sequence: number, json: string): boolean {
    if (this.ended) return true;
    this.pending += `id: ${sequence}\nevent: mig-event\ndata: ${json}\n\n`;
    // What the transport holds stays within the high-water mark plus one frame, as with a write per event.
    if (this.res.writableLength + this.pending.length >= this.res.writableHighWaterMark) return this.flush();
    return true;
  }

  flush(): boolean {
    if (this.ended) {
      this.pending = "";
      return true;
    }
    if (this.pending === "") return !this.res.writableNeedDrain;
    const chunk = this.pending;
    this.pending = "";
    return this.res.write(chunk);
  }

  notice(kind: string, detail: Record<string, string | number>): void {
    if (this.ended) return;
    let line = `: ${kind}`;
    for (const [k, v] of Object.entries(detail)) line += ` ${k}=${v}`;
    this.pending += `${line}\n\n`;
    this.flush();
  }

  drained(): Promise<void> {
    if (this.ended || !this.res.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(error: MigError | undefined): void {
    clearInterval(this.keepalive);
    if (this.ended) return;
    if (error) {
      const envelope = errorEnvelope(error, this.info ? { header: this.info.header } : undefined);
      this.pending += `event: mig-error\ndata: ${JSON.stringify(envelope)}\n\n`;
    }
    this.flush();
    this.ended = true;
    this.res.end();
  }
}

export async function serveSubscription(
  runtime: MigRuntime,
  req: IncomingMessage,
  res: ServerResponse,
  context: RequestContext,
  topic: string | undefined,
): Promise<void> {
  const query = new URL(req.url ?? "/", "http://localhost").searchParams;
  const header: Record<string, unknown> = {};
  // EventSource cannot send headers: the tenant may come in the query instead of X-Tenant-ID.
  const queryTenant = query.get("tenant_id");
  if (queryTenant) header.tenant_id = queryTenant;
  const traceparent = firstValue(req.headers.traceparent);
  if (traceparent) header.traceparent = traceparent;
  const body: Record<string, unknown> = { header, topic };
  for (const field of ["consumer_id", "resume_cursor", "max_inflight"]) {
    const value = query.get(field);
    if (value !== null) body[field] = value;
  }
  // A browser's automatic reconnect repeats the original URL and adds Last-Event-ID: that one wins.
  const lastEventId = firstValue(req.headers["last-event-id"]);
  if (lastEventId !== undefined && lastEventId !== "") body.resume_cursor = lastEventId;

  const sink = new SseSink(res);
  let subscription: Subscription;
  try {
    subscription = await runtime.subscribe(body, context, topic, sink);
  } catch (err) {
    if (!sink.gone) sendError(res, err, body, context.tenant);
    return;
  }
  if (sink.gone) {
    subscription.close();
    return;
  }
  res.on("close", () => subscription.close());
  const { info } = subscription;
  const untrack = trackExchange(req.socket, {
    kind: "sse_subscribe",
    tenant_id: info.header.tenant_id,
    actor: context.principal.subject,
    meta: {
      subscription_id: info.subscription_id,
      topic: info.topic,
      ...(info.consumer_id !== undefined ? { consumer_id: info.consumer_id } : {}),
      start_sequence: info.start_sequence,
    },
  });
  void subscription.closed.then(untrack);
}
