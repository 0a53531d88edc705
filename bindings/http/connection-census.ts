// The HTTP listener's open connections and the long-lived exchanges on them (WebSockets, their streams, SSE), as
// GET /admin/v0.1/connections lists them.
import type { Server } from "node:http";
import type { Socket } from "node:net";

/** One entry of GET /admin/v0.1/connections, in the shape of the standard's admin OpenAPI. */
export interface ConnectionEntry {
  id: string;
  /** The binding: `http` for this listener's; `nats_or_grpc` for the runtime's others (it does not record which). */
  protocol: string;
  kind: string;
  tenant_id?: string;
  /** The principal's subject. */
  actor?: string;
  remote_addr?: string;
  /** Left out where the runtime does not record it (streams and subscriptions of other bindings). */
  started_at?: string;
  meta?: Record<string, unknown>;
}

/** What an exchange on a socket says about itself; the census adds its id, protocol, address and start. */
export interface Exchange {
  kind: "websocket" | "ws_stream" | "sse_subscribe" | "sse_stream";
  tenant_id?: string | undefined;
  actor?: string | undefined;
  meta: Record<string, unknown>;
}

interface SocketRecord {
  census: ConnectionCensus;
  socket: Socket;
  /** Its entry, but for `started_at`, which is formatted when listed (`startedAt`, epoch ms). */
  entry: ConnectionEntry;
  startedAt: number;
  /** Upgraded to a WebSocket: its `websocket` entry stands for it. */
  upgraded: boolean;
  exchanges: Set<ConnectionEntry>;
}

/**
 * The socket → record link lives beside the sockets, not in the census: an exchange (bindings/http/sse.ts,
 * websocket.ts) reaches its listener's census through the socket it runs on, so no handler signature changes.
 */
const records = new WeakMap<object, SocketRecord>();

/**
 * Registers a long-lived exchange on `socket` with the census of the listener that accepted it; returns the function
 * that removes it (the socket's close removes it too). A socket no census watches (a listener started without one)
 * is not counted.
 */
export function trackExchange(socket: object | null | undefined, exchange: Exchange): () => void {
  const record = socket ? records.get(socket) : undefined;
  if (!record) return () => undefined;
  return record.census.add(record, exchange);
}

export class ConnectionCensus {
  /** Open sockets (each socket's record), in the order they were accepted. */
  private readonly sockets = new Set<SocketRecord>();
  private next = 0;

  /** Counts the connections `server` accepts (over TLS, once the handshake is done) until each closes. */
  watch(server: Server, tls: boolean): void {
    server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
      const record: SocketRecord = {
        census: this,
        entry: {
          id: this.id("http"),
          protocol: "http",
          kind: "http_connection",
          remote_addr: addressOf(socket),
        },
        socket,
        startedAt: Date.now(),
        upgraded: false,
        exchanges: new Set(),
      };
      records.set(socket, record);
      this.sockets.add(record);
      socket.once("close", () => this.sockets.delete(record));
    });
  }

  /** @internal From trackExchange. */
  add(record: SocketRecord, exchange: Exchange): () => void {
    if (!this.sockets.has(record)) return () => undefined;
    const entry: ConnectionEntry = {
      id: this.id(exchange.kind === "websocket" ? "ws" : exchange.kind),
      protocol: "http",
      kind: exchange.kind,
      ...(exchange.tenant_id !== undefined ? { tenant_id: exchange.tenant_id } : {}),
      ...(exchange.actor !== undefined ? { actor: exchange.actor } : {}),
      ...(record.entry.remote_addr !== undefined ? { remote_addr: record.entry.remote_addr } : {}),
      started_at: new Date().toISOString(),
      meta: { ...exchange.meta, connection_id: record.entry.id },
    };
    if (exchange.kind === "websocket") record.upgraded = true;
    record.exchanges.add(entry);
    return () => record.exchanges.delete(entry);
  }

  /**
   * Every open connection and exchange: a socket serving plain requests is one `http_connection`; a socket upgraded to
   * a WebSocket is its `websocket` entry; the streams and subscriptions on a socket are entries of their own.
   */
  entries(): ConnectionEntry[] {
    const all: ConnectionEntry[] = [];
    for (const record of this.sockets) {
      if (!record.upgraded) {
        // Node links a socket to the answer it is writing, as server-limits.ts reads it: nothing is done per request.
        const answering = (record.socket as { _httpMessage?: unknown })._httpMessage != null;
        all.push({
          ...record.entry,
          started_at: new Date(record.startedAt).toISOString(),
          meta: { answering, exchanges: record.exchanges.size },
        });
      }
      all.push(...record.exchanges);
    }
    return all;
  }

  private id(prefix: string): string {
    return `${prefix}-${++this.next}`;
  }
}

function addressOf(socket: Socket): string | undefined {
  const { remoteAddress, remotePort } = socket;
  if (remoteAddress === undefined) return undefined;
  return remoteAddress.includes(":") ? `[${remoteAddress}]:${remotePort}` : `${remoteAddress}:${remotePort}`;
}
