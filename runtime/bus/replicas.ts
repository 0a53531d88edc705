// How many copies JetStream keeps of what the runtime stores (MIG_JS_REPLICAS): 1 on the embedded server, 3 on a
// cluster. An asset that exists is checked, never recreated behind the operator's back, and a cluster that cannot
// place the copies stops the runtime with a sentence that names the fix.
import type { JetStreamManager, StreamInfo } from "@nats-io/jetstream";
import type { KV, Kvm, KvOptions } from "@nats-io/kv";

/**
 * Throws unless the stream `info` describes keeps `replicas` copies: changing that is an operator's decision
 * (JetStream can move a stream to more or fewer replicas, but it copies the whole store to do it).
 */
export function checkReplicas(info: StreamInfo, replicas: number): void {
  const name = info.config.name;
  const has = info.config.num_replicas || 1;
  if (has !== replicas) {
    throw new Error(
      `the JetStream stream ${name} keeps ${has} ${has === 1 ? "copy" : "copies"} but MIG_JS_REPLICAS asks for ${replicas}: set MIG_JS_REPLICAS=${has}, or change the stream with \`nats stream edit ${name} --replicas ${replicas}\``,
    );
  }
}

/** An error of JetStream creating `what` with `replicas` copies, turned into a sentence when the cause is placement. */
export function placementError(err: unknown, what: string, replicas: number): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (/replicas > 1 not supported in non-clustered mode|insufficient resources|no suitable peers/i.test(message)) {
    return new Error(
      `JetStream cannot keep ${replicas} copies of ${what} (${message}): MIG_JS_REPLICAS must not exceed the JetStream servers of the cluster (1 for a single server, such as the embedded one)`,
    );
  }
  return err instanceof Error ? err : new Error(message);
}

/** Opens the KV bucket `name`, checking the copies of one that exists, or creates it with `replicas` copies. */
export async function openBucket(
  kvm: Kvm,
  jsm: JetStreamManager,
  name: string,
  replicas: number,
  options: Partial<KvOptions>,
): Promise<KV> {
  const existing = await jsm.streams.info(`KV_${name}`).catch(() => undefined); // none yet: created below
  if (existing) checkReplicas(existing, replicas);
  try {
    return await kvm.create(name, { ...options, replicas });
  } catch (err) {
    throw placementError(err, `the KV bucket ${name}`, replicas);
  }
}
