// The NATS headers of a reply: the MIG header fields mirrored (spec section 7), encoded in one string.
//
// nats.js's MsgHdrs canonicalizes, searches and validates the whole key list on every set(), and was
// about a sixth of the bytes a NATS invoke allocated (5 KB of 30 KB per call, docs/decisions.md). A reply's
// headers are only ever written, and nats.js's publish reads nothing from its `headers` option but
// encode() (@nats-io/nats-core 3.x, protocol.js), so this class provides that one method over a string
// built in the wire format NATS headers have (an HTTP/1-style block after "NATS/1.0").
import type { MsgHdrs } from "@nats-io/transport-node";
import type { MessageHeader } from "../../runtime/types.ts";

/** MIG header fields mirrored between the body's header and NATS message headers (spec section 7). */
export const MIRRORED_FIELDS = ["mig_version", "message_id", "tenant_id", "session_id", "traceparent", "idempotency_key"] as const;

const encoder = new TextEncoder();
/** A value that would end the header line early cannot be sent as it is; such values are left out. */
const LINE_BREAK = /[\r\n]/;

class ReplyHeaders {
  constructor(private readonly text: string) {}

  encode(): Uint8Array {
    return encoder.encode(this.text);
  }
}

/** Headers for a reply carrying `header`, plus `mig_error_code` for an error envelope. */
export function replyHeaders(header: MessageHeader | undefined, errorCode?: string): MsgHdrs {
  let text = "NATS/1.0";
  if (header) {
    for (const field of MIRRORED_FIELDS) {
      const value = header[field];
      if (value === undefined || value === "") continue;
      const line = String(value).trim();
      if (line !== "" && !LINE_BREAK.test(line)) text += `\r\n${field}: ${line}`;
    }
  }
  if (errorCode !== undefined) text += `\r\nmig_error_code: ${errorCode}`;
  return new ReplyHeaders(`${text}\r\n\r\n`) as unknown as MsgHdrs;
}
