// The NATS headers of a reply: the MIG header fields mirrored (spec section 7), plus the error code of an error
// envelope; and an error reply whole.
import type { MsgHdrs } from "@nats-io/transport-node";
import { errorEnvelope, HeaderBlock } from "../../runtime/mod.ts";
import { ERROR_CODE_HEADER, MIRRORED_HEADER_FIELDS } from "../../schemas/nats-headers.ts";
import type { MessageHeader } from "../../schemas/types.ts";

/**
 * Headers for a reply carrying `header`. A field whose value has a line break (session_id and idempotency_key are
 * free text) is left out of the NATS headers; the body still carries it.
 */
export function replyHeaders(header: MessageHeader | undefined, errorCode?: string): MsgHdrs {
  const block = new HeaderBlock();
  if (header) {
    for (const field of MIRRORED_HEADER_FIELDS) {
      const value = header[field];
      if (value !== undefined) block.add(field, String(value));
    }
  }
  if (errorCode !== undefined) block.add(ERROR_CODE_HEADER, errorCode);
  return block.forPublish;
}

/** An error as the NATS binding answers it: the envelope's JSON, with its code in the `mig_error_code` header. */
export function errorReply(
  err: unknown,
  body: unknown,
  tenant: string | undefined,
): { data: string; headers: MsgHdrs } {
  const envelope = errorEnvelope(err, body, tenant);
  return { data: JSON.stringify(envelope), headers: replyHeaders(envelope.header, envelope.error.code) };
}
