// The NATS headers of the MIG NATS binding (docs/bindings/nats.md): one list for the binding, the client and the
// conformance harness.

/** MIG header fields mirrored between a body's header and the NATS message headers (spec section 7). */
export const MIRRORED_HEADER_FIELDS = [
  "mig_version",
  "message_id",
  "tenant_id",
  "session_id",
  "traceparent",
  "idempotency_key",
] as const;

/** The MIG code of an error reply. */
export const ERROR_CODE_HEADER = "mig_error_code";

/** A gateway's heartbeat on a NATS subscription's deliver_subject (its value: the subscription id; no body). */
export const HEARTBEAT_HEADER = "mig_heartbeat";
