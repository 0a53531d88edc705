// The JetStream wire details the runtime uses below nats.js's API, in one place: reading a delivered message's
// `$JS.ACK…` reply subject, acking by publishing to it, and asking a pull consumer for a batch by a request of
// our own. Why below the API: the subscription pump pulls into its own bounded queue and acks in batches, which
// nats.js's consumer iterators do not allow (docs/events.md). test/jetstream-wire.test.ts pins this behaviour
// against a real nats-server, so an upgrade of the server or of nats.js that changes it fails there first.
import type { NatsConnection } from "@nats-io/transport-node";

/** The bodies of an ack and of a terminate, published to a message's reply subject. */
export const ACK = new TextEncoder().encode("+ACK");
export const TERM = new TextEncoder().encode("+TERM");

/** What the reply subject of a delivered JetStream message says about it. */
export interface AckSubject {
  /** The consumer that delivered it. */
  consumer: string;
  /** How many times this message has been delivered, this time included. */
  deliveryCount: number;
  /** Its sequence in the stream. */
  seq: number;
  /** How many messages of the consumer's filter wait behind it. */
  pending: number;
}

/**
 * Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the longer form with a domain
 * and an account hash after `$JS.ACK.` that newer servers send; undefined for any other subject.
 */
export function readAckSubject(reply: string | undefined): AckSubject | undefined {
  if (!reply?.startsWith("$JS.ACK.")) return undefined;
  const t = reply.split(".");
  if (t.length < 9) return undefined;
  const base = t.length === 9 ? 4 : 6;
  return {
    consumer: t[base - 1]!,
    deliveryCount: Number(t[base]),
    seq: Number(t[base + 1]),
    pending: Number(t[base + 4]),
  };
}

/**
 * Asks the pull consumer `consumer` of `stream` for up to `batch` messages, delivered to `replyTo`; the request
 * expires after `expiresMs` (JetStream then sends a 408 status message to `replyTo`).
 */
export function requestBatch(
  nc: NatsConnection,
  stream: string,
  consumer: string,
  request: { batch: number; expiresMs: number; replyTo: string },
): void {
  nc.publish(
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    JSON.stringify({ batch: request.batch, expires: request.expiresMs * 1_000_000 }),
    { reply: request.replyTo },
  );
}
