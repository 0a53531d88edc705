// CANCEL: stops an in-flight invocation of the caller's tenant and says in `status` what happened.
import { MigError } from "./errors.ts";
import { acceptHeader } from "./header.ts";
import { checkMessageId } from "./names.ts";
import { transportTenant } from "./policy.ts";
import { agreeing, optionalStringField, requireObject } from "./request.ts";
import type { RequestContext, RuntimeCore } from "./core.ts";
import type { CancelAck } from "./types.ts";

export function cancel(core: RuntimeCore, body: unknown, request: RequestContext, pathMessageId?: string): CancelAck {
  const raw = requireObject(body);
  const header = acceptHeader(raw, {
    transportTenant: transportTenant(request.principal, request.tenant),
    maxDeadlineMs: core.config.maxDeadlineMs,
  });
  const target = agreeing(pathMessageId, optionalStringField(raw, "target_message_id", 100), "target_message_id");
  if (target === undefined) throw new MigError("MIG_INVALID_REQUEST", "target_message_id is required: name it in the path or in the body");
  checkMessageId(target, "target_message_id");
  const reason = optionalStringField(raw, "reason", 500) ?? "";

  const inflight = core.inflight.get(target);
  if (inflight) {
    core.policy.authorizeCancel(request, header.tenant_id, inflight);
    inflight.actor.send({ type: "CANCEL", reason });
    return { header, target_message_id: target, accepted: true, status: "cancelled" };
  }
  const status = core.finished.tenantOf(target) === header.tenant_id ? "already_completed" : "not_found";
  return { header, target_message_id: target, accepted: false, status };
}
