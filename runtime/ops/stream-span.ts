// The span of a streaming INVOKE (`mig.stream`, made by the runtime's openStream like an operation's span): it
// lasts as long as the stream, and marks each pause and resume of the provider by its consumer's credit, and the
// cancel or deadline that ended it.
import type { StreamEnd } from "../../actors/stream.ts";
import { endSpan, type Span } from "../base/tracing.ts";
import type { StreamSession } from "../flow/stream-session.ts";

/** Follows `session` on `span` until it ends. */
export function traceSession(span: Span, session: StreamSession): void {
  span.setAttribute("mig.stream_id", session.streamId);
  session.onPressure((paused) => span.addEvent(paused ? "pause" : "resume"));
  void session.ended.then((end) => endStreamSpan(span, end));
}

/** A stream handed to a worker whole (the NATS binding's streams): its spans continue there. */
export function endHandedOffSpan(span: Span): void {
  span.setAttribute("mig.handed_off", true);
  endSpan(span);
}

function endStreamSpan(span: Span, end: StreamEnd): void {
  if (end.state === "completed") return endSpan(span);
  if (end.state === "cancelled") span.addEvent("cancel", { "mig.reason": end.reason });
  else if (end.state === "timed_out") span.addEvent("deadline");
  endSpan(span, end.error);
}
