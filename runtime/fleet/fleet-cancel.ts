// The holder's side of CANCEL fan-out: a runtime asked on `_MIG.fleet.cancel` answers only for invocations and streams it runs.

import type { Msg } from "@nats-io/transport-node";
import { MigError } from "../../schemas/errors.ts";
import type { CancelStatus } from "../../schemas/types.ts";

import { operationRecord } from "../policy/audit.ts";
import { replySubjectAllowed } from "../policy/policy.ts";
import { decode, encode } from "../protocol/provider-protocol.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import type { FleetHost } from "./fleet-host.ts";

export interface FleetCancelAnswer {
  status: CancelStatus | "forbidden";
  message?: string;
}

/** The asker's caller as the question describes it. */
function callerOf(request: { tenant?: unknown; subject?: unknown; authenticated?: unknown }): RequestContext {
  return {
    principal: {
      subject: typeof request.subject === "string" ? request.subject : "unknown",
      tenant_id: typeof request.tenant === "string" ? request.tenant : undefined,
      scopes: new Set(),
      authenticated: request.authenticated === true,
    },
    binding: "nats",
  };
}

/**
 * Cancels `target` if this runtime runs it and the asker may (the same policy as a local CANCEL), or says it
 * already completed; stays silent otherwise, so the runtime that does hold it is the one heard.
 */
export function answerFleetCancel(runtime: FleetHost, msg: Msg): void {
  let request: {
    target?: unknown;
    tenant?: unknown;
    reason?: unknown;
    from?: unknown;
    subject?: unknown;
    authenticated?: unknown;
  };
  try {
    request = decode(msg.data) as typeof request;
  } catch {
    return;
  }
  if (!msg.reply || request.from === runtime.instanceId || typeof request.target !== "string") return;
  // Asking gateways listen on an inbox; on a bus without permissions anyone could ask, naming any reply subject.
  if (!replySubjectAllowed(msg.reply, typeof request.tenant === "string" ? request.tenant : "")) return;
  const stream = runtime.work.streams.get(request.target);
  const inflight = runtime.work.invocations.get(request.target);
  let answer: FleetCancelAnswer | undefined;
  const held = stream ?? inflight;
  if (held && held.tenant !== request.tenant) {
    // Silent, as for an id this runtime does not hold: the asker answers not_found, so CANCEL is no oracle
    // for another tenant's live ids. The refusal is audited here, where the target lives.
    const error = new MigError(
      "MIG_FORBIDDEN",
      "the target invocation belongs to another tenant; only its own tenant may cancel it",
    );
    runtime.audit?.record(
      operationRecord(
        runtime.serverId,
        "cancel",
        undefined,
        { ...callerOf(request), tenant: String(request.tenant) },
        request.target,
        error,
      ),
    );
    return;
  }
  if (stream || inflight) {
    const caller = callerOf(request);
    try {
      const reason = typeof request.reason === "string" ? request.reason : "";
      if (stream) {
        runtime.policy.authorizeCancel(caller, String(request.tenant), stream);
        stream.cancel(reason);
      } else {
        runtime.policy.authorizeCancel(caller, String(request.tenant), inflight!);
        inflight!.actor.send({ type: "CANCEL", reason });
      }
      answer = { status: "cancelled" };
    } catch (err) {
      answer = { status: "forbidden", message: (err as Error).message };
    }
  } else if (runtime.work.finishedTenant(request.target) === request.tenant) {
    answer = { status: "already_completed" };
  }
  if (answer) msg.respond(encode(answer));
}
