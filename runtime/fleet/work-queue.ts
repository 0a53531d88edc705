// The work queue of at_least_once and exactly_once capabilities: one JetStream stream, one durable pull consumer
// per capability that all its workers share. Made by whichever process needs it first, gateway or worker.
import { AckPolicy, type JetStreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { checkReplicas, placementError } from "../bus/replicas.ts";
import {
  consumerName,
  jsWorkSubject,
  versionedConsumerName,
  versionedJsWorkSubject,
  WORK_ACK_WAIT_MS,
  WORK_MAX_DELIVER,
  WORK_STREAM,
  WORK_STREAM_SUBJECTS,
} from "../protocol/provider-protocol.ts";

/**
 * The durable pull consumer that all providers of one queued capability share; with `version`, the one of that
 * version's subject (versioned subjects: runtime/protocol/provider-protocol.ts).
 */
export async function ensureWorkConsumer(jsm: JetStreamManager, capability: string, version?: string): Promise<void> {
  await jsm.consumers.add(WORK_STREAM, {
    durable_name: version === undefined ? consumerName(capability) : versionedConsumerName(capability, version),
    filter_subject: version === undefined ? jsWorkSubject(capability) : versionedJsWorkSubject(capability, version),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(WORK_ACK_WAIT_MS),
    max_deliver: WORK_MAX_DELIVER,
    max_ack_pending: 4096,
  });
}

/** The work-queue stream: file storage, so queued work survives a restart of the bus; `replicas` copies. */
export async function ensureWorkStream(jsm: JetStreamManager, replicas: number): Promise<void> {
  const existing = await jsm.streams.info(WORK_STREAM).catch(() => undefined); // none yet: created below
  if (existing) return checkReplicas(existing, replicas);
  try {
    await jsm.streams.add({
      name: WORK_STREAM,
      subjects: [WORK_STREAM_SUBJECTS],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      max_age: nanos(24 * 3600 * 1000),
      num_replicas: replicas,
    });
  } catch (err) {
    // Another worker created it in the meantime.
    await jsm.streams.info(WORK_STREAM).catch(() => {
      throw placementError(err, "the work queue", replicas);
    });
  }
}
