// The connection to the bus: one NATS connection per process, with JetStream and KV handles on it, and a second
// one for the public events subjects, opened without echo (see `events` below).
import { readFileSync } from "node:fs";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { Logger } from "../base/logger.ts";

export interface Bus {
  nc: NatsConnection;
  /**
   * The connection of the public events subjects `mig.v0_1.<tenant>.events.<topic>`: the NATS binding's PUBLISH
   * subscription and the runtime's live EventMessages share it, opened with `noEcho`, so the server never hands
   * the runtime its own live copy of an event (which the binding would only drop again: that round trip cost
   * about a fifth of the runtime's CPU per PUBLISH: docs/decisions.md, 'Public events subjects use a second
   * connection with `no_echo`'). The stored events and their JetStream acks travel on it too, so one PUBLISH's
   * messages share a socket and a write (runtime/bus/turn-batch.ts). Closed when `nc` closes.
   */
  events: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  url: string;
  /** Called after `nc` reconnects (e.g. the bus restarted): pulls in flight may be lost, so their owners ask again. */
  onReconnect: Set<() => void>;
}

/** How this process proves itself to the bus (docs/security.md): user/password or a creds file, and TLS. */
export interface BusCredentials {
  user?: string | undefined;
  password?: string | undefined;
  credsFile?: string | undefined;
  tlsCa?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}

function connectionSecurity(credentials: BusCredentials): Partial<NodeConnectionOptions> {
  const options: Partial<NodeConnectionOptions> = {};
  if (credentials.user) {
    options.user = credentials.user;
    if (credentials.password !== undefined) options.pass = credentials.password;
  }
  if (credentials.credsFile) options.authenticator = credsAuthenticator(readFileSync(credentials.credsFile));
  if (credentials.tlsCa || credentials.tlsCert) {
    options.tls = {};
    if (credentials.tlsCa) options.tls.caFile = credentials.tlsCa;
    if (credentials.tlsCert) options.tls.certFile = credentials.tlsCert;
    if (credentials.tlsKey) options.tls.keyFile = credentials.tlsKey;
  }
  return options;
}

async function open(
  url: string,
  name: string,
  logger: Logger,
  credentials: BusCredentials,
  noEcho: boolean,
  onReconnect?: Set<() => void>,
): Promise<NatsConnection> {
  const nc = await connect({
    ...connectionSecurity(credentials),
    servers: url.split(","),
    name,
    noEcho,
    // A runtime outlives bus restarts: it reconnects for as long as it runs.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    // The client library otherwise captures two stack traces per request (one for a timeout that rarely comes):
    // measurable on every PUBLISH, and our errors name the operation themselves.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") {
        logger.info(
          { bus: status.type, connection: name, server: "server" in status ? status.server : undefined },
          `bus ${status.type}`,
        );
      }
      if (status.type === "reconnect" && onReconnect) for (const listener of onReconnect) listener();
    }
  })();
  return nc;
}

export async function connectBus(
  url: string,
  name: string,
  logger: Logger,
  credentials: BusCredentials = {},
): Promise<Bus> {
  const onReconnect = new Set<() => void>();
  const nc = await open(url, name, logger, credentials, false, onReconnect);
  let events: NatsConnection;
  try {
    events = await open(url, `${name}-events`, logger, credentials, true);
  } catch (err) {
    await nc.close();
    throw err;
  }
  // The runtime drains `nc` when it stops; the events connection follows it.
  void nc.closed().then(() => events.drain().catch(() => undefined));
  const jsm = await jetstreamManager(nc);
  return { nc, events, js: jetstream(nc), jsm, kvm: new Kvm(nc), url, onReconnect };
}

/**
 * Calls `listener` with "disconnect" each time `nc` loses its server (before nats.js starts reconnecting) and with
 * "reconnect" when it is back; ends with the connection. What waits for an answer on `nc` fails fast on a
 * disconnect (the answer, if it comes at all, comes while nobody listens) rather than at its own timeout.
 */
export function onConnectionChange(nc: NatsConnection, listener: (change: "disconnect" | "reconnect") => void): void {
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") listener(status.type);
    }
  })().catch(() => undefined);
}
