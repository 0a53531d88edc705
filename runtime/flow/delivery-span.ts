// The span of one event handed to a subscriber (`mig.deliver`): a child of the PUBLISH that stored the event,
// whose span the stored event names in its header's traceparent (runtime/ops/publish.ts), so a delivery, a
// replay days later too, joins the publisher's trace.
import { recorded, remoteContext, type Span, SpanKind, startSpan } from "../base/tracing.ts";

const STORED_TRACEPARENT = /"traceparent":"([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"/;

export function startDeliverySpan(
  stored: string,
  sequence: number,
  replay: boolean,
  where: { tenant: string; topic: string; subscriptionId: string },
): Span | undefined {
  // The header comes first in a stored event: the first traceparent is its own, not one inside the payload.
  const traceparent = STORED_TRACEPARENT.exec(stored.slice(0, stored.indexOf(',"payload":')))?.[1];
  if (!recorded(undefined, traceparent)) return undefined; // its PUBLISH was not sampled
  return startSpan("mig.deliver", SpanKind.CONSUMER, remoteContext(traceparent), {
    "mig.tenant": where.tenant,
    "mig.topic": where.topic,
    "mig.subscription_id": where.subscriptionId,
    "mig.sequence": sequence,
    "mig.replay": replay,
  });
}
