// CANCEL: stops an in-flight invocation of the caller's tenant and says in `status` what happened.

import { MigError } from "../../schemas/errors.ts";
import type { CancelAck } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import { checkMessageId } from "../protocol/names.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { acceptRequest, agreeing, optionalStringField } from "./request.ts";

export async function cancel(
  core: RuntimeCore,
  body: unknown,
  request: RequestContext,
  pathMessageId?: string,
): Promise<CancelAck> {
  const { raw, header } = acceptRequest(core, body, request);
  const target = agreeing(pathMessageId, optionalStringField(raw, "target_message_id", 100), "target_message_id");
  if (target === undefined)
    throw new MigError("MIG_INVALID_REQUEST", "target_message_id is required: name it in the path or in the body");
  checkMessageId(target, "target_message_id");
  const reason = optionalStringField(raw, "reason", 500) ?? "";

  // A stream (runtime/flow/stream-session.ts) is cancelled by the message_id of its request, like an invocation.
  const live = core.work.streams.get(target) ?? core.work.invocations.get(target);
  if (live && live.tenant !== header.tenant_id) {
    // Answered exactly like an id nobody holds, so that CANCEL is no oracle for another tenant's live
    // ids; the refusal still reaches the audit log.
    request.hiddenDenial = new MigError(
      "MIG_FORBIDDEN",
      "the target invocation belongs to another tenant; only its own tenant may cancel it",
    );
    return { header, target_message_id: target, accepted: false, status: "not_found" };
  }
  const stream = core.work.streams.get(target);
  if (stream) {
    core.policy.authorizeCancel(request, header.tenant_id, stream);
    stream.cancel(reason);
    return { header, target_message_id: target, accepted: true, status: "cancelled" };
  }
  const inflight = core.work.invocations.get(target);
  if (inflight) {
    core.policy.authorizeCancel(request, header.tenant_id, inflight);
    inflight.actor.send({ type: "CANCEL", reason });
    return { header, target_message_id: target, accepted: true, status: "cancelled" };
  }
  if (core.work.finishedTenant(target) === header.tenant_id) {
    return { header, target_message_id: target, accepted: false, status: "already_completed" };
  }
  // Not here: the invocation may run on another runtime of the fleet, which cancels it and answers.
  const elsewhere = await core.fleet?.cancelElsewhere(target, header.tenant_id, reason, request);
  if (elsewhere?.status === "forbidden") {
    // The holder applied the same policy (tenant, and subject when MIG_CANCEL_SAME_SUBJECT) and refused.
    throw new MigError("MIG_FORBIDDEN", elsewhere.message ?? `message ${target} may not be cancelled by this caller`);
  }
  if (elsewhere) request.authorized = true;
  if (elsewhere)
    return { header, target_message_id: target, accepted: elsewhere.status === "cancelled", status: elsewhere.status };
  return { header, target_message_id: target, accepted: false, status: "not_found" };
}
