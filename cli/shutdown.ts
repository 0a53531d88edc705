// How a gateway stops on SIGTERM or SIGINT: it takes no new work (the NATS binding leaves its queue groups, so the
// other gateways of the fleet get the requests; HTTP and gRPC stop accepting), lets what is in flight finish for up
// to MIG_DRAIN_TIMEOUT_MS, then cancels what is left and stops the runtime and its bus. A rolling restart of the
// gateways so loses no request that was accepted.
import type { Logger } from "../runtime/base/logger.ts";
import type { MigRuntime } from "../runtime/runtime.ts";

/** A binding as the shutdown sees it: `close` stops intake and waits for its answers, up to `graceMs`. */
export interface Closable {
  close(graceMs?: number): Promise<void>;
}

export async function stopGateway(
  runtime: MigRuntime,
  bindings: (Closable | undefined)[],
  drainMs: number,
  logger: Logger,
): Promise<void> {
  logger.info({ drain_ms: drainMs }, "draining: taking no new work, finishing what is in flight");
  // The bindings stop taking requests now, and keep their connections until the answers are out.
  const closing = Promise.all(bindings.map((binding) => binding?.close(drainMs + ANSWER_GRACE_MS)));
  const drained = await runtime.drain(drainMs);
  if (!drained) {
    logger.warn(
      { invocations: runtime.work.invocations.size, streams: runtime.work.streams.size },
      "drain bound reached (MIG_DRAIN_TIMEOUT_MS): cancelling what is left; its callers are told to retry",
    );
  }
  // Cancels what is left (answered MIG_UNAVAILABLE, retryable) and closes the bus.
  await runtime.stop();
  await closing;
}

/** How long the bindings wait, after the drain bound, for the answers to the calls cancelled at the bound. */
const ANSWER_GRACE_MS = 1_000;
