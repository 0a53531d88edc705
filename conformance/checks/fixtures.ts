// Names and payloads the checks share: routes, the reference's default capability and payloads for it, the fixture capabilities.

export const BASE = "/mig/v0.1";

/** The default capability of the reference gateway, which its own smoke tools invoke. */
export const INFER = "observatory.models.infer";
export const INFER_PAYLOAD = { input: "health-check" } as const;
/** Fails the capability's input schema (`input` must be a string). */
export const INFER_BAD_PAYLOAD = { input: 42 } as const;

/** A capability id no endpoint should serve. */
export const UNKNOWN_CAPABILITY = "conformance.no-such-capability";

export const VALID_MODES = ["unary", "server_stream", "client_stream", "bidi_stream"];

export function invokePath(capability: string): string {
  return `${BASE}/invoke/${encodeURIComponent(capability)}`;
}

/**
 * Fixture capabilities (docs/conformance.md, "Fixtures"): what a check needs to see work being cancelled, timed out
 * or paused. This runtime serves them from runtime/provider/demo-provider.ts; a check that needs one SKIPs when
 * DISCOVER does not list it.
 */
export const FIXTURE = {
  /** unary `{delay_ms, tag?}`: waits, unless cancelled or past its deadline. */
  slow: "mig.fixture.slow",
  /** server_stream `{count, interval_ms?, pad_bytes?, tag?}`: frames `{index, pad?}`, awaiting each emit. */
  count: "mig.fixture.count",
  /** unary, needs the scope `fixture:scoped`. */
  scoped: "mig.fixture.scoped",
  /** unary `{tag}` → `{tag, state: "running" | "completed" | "aborted" | "unknown", emitted, reason?}`. */
  probe: "mig.fixture.probe",
} as const;

/** A fixture run's `tag`: unique to this run of the harness and this check. */
export function fixtureTag(runId: string, name: string): string {
  return `conformance-${runId}-${name}`;
}

/** A delay no check waits for: the fixture must be stopped (cancel, deadline) for the check to see an answer. */
export function longDelayMs(timeoutMs: number): number {
  return Math.min(600_000, Math.max(60_000, timeoutMs * 10));
}
