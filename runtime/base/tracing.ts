// OpenTelemetry spans of the runtime (docs/observability.md). The runtime speaks only the OpenTelemetry API; the
// SDK and its exporter are loaded by runtime/base/tracing-sdk.ts when the OTEL_* settings ask for them. Every span
// site first reads `tracing.on`: with no exporter configured, tracing costs one property read per site and makes
// no object.
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { MigError } from "../../schemas/errors.ts";

export type { Span };
export { SpanKind };

/** Whether spans are recorded and exported; set once, when the SDK starts. */
export const tracing = { on: false };

const tracer = () => trace.getTracer("mig-runtime");

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const INVALID_TRACE = "00000000000000000000000000000000";
const INVALID_SPAN = "0000000000000000";

/** The context a W3C `traceparent` names (a span of another process), or the root context when it names none. */
export function remoteContext(traceparent: string | undefined): Context {
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  if (!match || match[1] === INVALID_TRACE || match[2] === INVALID_SPAN) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16) & 1,
    isRemote: true,
  });
}

/**
 * The parent of a span: `span` when this process made one for the same work (the operation's, the actor's), else
 * the caller's or the other process's span that `traceparent` names. Parents are passed, not found in an async
 * context: the SDK runs without a context manager, whose hooks on every promise would cost all calls, traced or not.
 */
export function parentOf(span: Span | undefined, traceparent: string | undefined): Context {
  return span ? trace.setSpan(ROOT_CONTEXT, span) : remoteContext(traceparent);
}

/**
 * Whether work under this parent is recorded: the parent span records, or the traceparent says its trace is sampled.
 * Spans under an unsampled parent are not made at all (a parent-based sampler, the default, would drop them anyway).
 */
export function recorded(span: Span | undefined, traceparent: string | undefined): boolean {
  if (span) return span.isRecording();
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  return match !== null && (Number.parseInt(match[3]!, 16) & 1) === 1;
}

/** Whether the span `parent` holds belongs to another process (it came in a traceparent). */
export function isRemote(parent: Context): boolean {
  return trace.getSpan(parent)?.spanContext().isRemote === true;
}

/** The `traceparent` that makes a span of another process a child of `span`. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-0${traceFlags & 1}`;
}

/** `header` with `span` as its traceparent, for work sent on (to another process, or to a provider's handler). */
export function withTraceparent<H extends { traceparent?: string | undefined }>(header: H, span: Span | undefined): H {
  return span === undefined ? header : { ...header, traceparent: traceparentOf(span) };
}

export function startSpan(name: string, kind: SpanKind, parent: Context, attributes: Attributes): Span {
  return tracer().startSpan(name, { kind, attributes }, parent);
}

/**
 * Ends `span` with the MIG outcome: `completed`, or the error's code (and `cancelled` / `timed_out` as the
 * runtime's metrics name them), the span's status an error for anything but a completion.
 */
export function endSpan(span: Span, error?: unknown): void {
  if (error === undefined) {
    span.setAttribute("mig.outcome", "completed");
  } else {
    const code = error instanceof MigError ? error.code : "MIG_INTERNAL";
    const outcome =
      error instanceof MigError && error.details?.cancelled === true
        ? "cancelled"
        : code === "MIG_TIMEOUT"
          ? "timed_out"
          : "failed";
    span.setAttributes({ "mig.outcome": outcome, "mig.error_code": code });
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end();
}
