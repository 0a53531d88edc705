// Names and payloads the checks share: routes, the reference's default capability, and payloads for it.

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
