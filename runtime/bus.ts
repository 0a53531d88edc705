// The connection to the bus: one NATS connection per process, with JetStream and KV handles on it.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { Logger } from "./logger.ts";

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kvm: Kvm;
  url: string;
}

export async function connectBus(url: string, name: string, logger: Logger): Promise<Bus> {
  const nc = await connect({
    servers: url.split(","),
    name,
    // A runtime outlives bus restarts: it reconnects for as long as it runs.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") {
        logger.info({ bus: status.type, server: "server" in status ? status.server : undefined }, `bus ${status.type}`);
      }
    }
  })();
  const jsm = await jetstreamManager(nc);
  return { nc, js: jetstream(nc), jsm, kvm: new Kvm(nc), url };
}

/** Opens (or creates) a KV bucket; a bucket that exists keeps its settings. */
export async function openBucket(bus: Bus, name: string, ttlMs: number): Promise<KV> {
  return bus.kvm.create(name, { ttl: ttlMs, history: 1 });
}
