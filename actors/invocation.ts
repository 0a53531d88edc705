// The invocation actor: one per unary INVOKE, from acceptance to exactly one final outcome.
//
//   received ── DISPATCHED ─▶ dispatched ── RESULT ──▶ completed (final)
//   received | dispatched ── FAIL ──▶ failed (final)
//                         ── CANCEL ──▶ cancelled (final, aborts work)
//                         ── DEADLINE ──▶ timed_out (final, aborts work)
//
// An XState actor whose logic is this file's transition function (XState's ActorLogic interface, as
// `fromTransition` builds it), not a state machine: the same states, events and final outcomes, started,
// observed and contained by the supervisor like every actor, at a fifth of a machine's cost. A machine
// resolves state nodes, transition domains and action lists on every event, and that was a quarter of
// a worker's CPU per NATS invoke (docs/decisions.md, 'The invocation actor is a transition function, not a
// machine'). The streams and subscriptions, which live long and have timers, stay machines.
//
// The deadline arrives as an event from a plain timer that runtime/ops/invoke.ts starts and clears, and the
// handler's result arrives as an event. Entering a final state settles the caller exactly once; the
// effects (settle, abort) are deferred to after the snapshot is taken, as XState runs a machine's
// entry actions, so a throwing effect ends the actor in `error` and the supervisor contains it.
import type { ActorLogic, ActorScope, Snapshot } from "xstate";
import { MigError } from "../schemas/errors.ts";
import type { JsonObject } from "../schemas/types.ts";

export type InvocationOutcome = { ok: true; payload: JsonObject } | { ok: false; error: MigError };

export interface InvocationInput {
  deadlineMs: number;
  /** Aborts the handler's work (an AbortController, or runtime/ops/invoke.ts's lazy one). */
  controller: { abort(reason: MigError): void };
  settle: (outcome: InvocationOutcome) => void;
}

export type InvocationEvent =
  | { type: "DISPATCHED" }
  | { type: "RESULT"; payload: JsonObject }
  | { type: "FAIL"; error: MigError }
  /** `error`, when given, is what the caller is answered instead of the standard's cancelled MIG_TIMEOUT. */
  | { type: "CANCEL"; reason: string; error?: MigError }
  | { type: "DEADLINE" };

export type InvocationState = "received" | "dispatched" | "completed" | "failed" | "cancelled" | "timed_out";

/** A snapshot as the supervisor reads every actor's: `value` is the state, `status` is "done" once final. */
export type InvocationSnapshot = Snapshot<InvocationOutcome> & { value: InvocationState; context: InvocationInput };

type Scope = ActorScope<InvocationSnapshot, InvocationEvent>;

function active(value: InvocationState, context: InvocationInput): InvocationSnapshot {
  return { status: "active", value, context, output: undefined, error: undefined };
}

function final(
  scope: Scope,
  value: InvocationState,
  context: InvocationInput,
  outcome: InvocationOutcome,
  abort: boolean,
): InvocationSnapshot {
  scope.defer(() => {
    if (abort && !outcome.ok) context.controller.abort(outcome.error);
    context.settle(outcome);
  });
  return { status: "done", value, context, output: outcome, error: undefined };
}

function transition(snapshot: InvocationSnapshot, event: InvocationEvent, scope: Scope): InvocationSnapshot {
  if (snapshot.status !== "active") return snapshot;
  const { context, value } = snapshot;
  switch (event.type) {
    case "DISPATCHED":
      return value === "received" ? active("dispatched", context) : snapshot;
    case "RESULT":
      return value === "dispatched"
        ? final(scope, "completed", context, { ok: true, payload: event.payload }, false)
        : snapshot;
    case "FAIL":
      return final(scope, "failed", context, { ok: false, error: event.error }, false);
    case "CANCEL": {
      // The standard's reference answers a cancelled invocation with MIG_TIMEOUT; details tell the two apart.
      const error =
        event.error ??
        new MigError("MIG_TIMEOUT", `the invocation was cancelled${event.reason ? `: ${event.reason}` : ""}`, {
          retryable: false,
          details: { cancelled: true, reason: event.reason },
        });
      return final(scope, "cancelled", context, { ok: false, error }, true);
    }
    case "DEADLINE": {
      const error = new MigError("MIG_TIMEOUT", `the invocation exceeded its deadline of ${context.deadlineMs} ms`, {
        details: { deadline_ms: context.deadlineMs },
      });
      return final(scope, "timed_out", context, { ok: false, error }, true);
    }
    default:
      return snapshot; // XState's own events (e.g. a child's done event) change nothing here
  }
}

export const invocationLogic: ActorLogic<InvocationSnapshot, InvocationEvent, InvocationInput> = {
  transition,
  getInitialSnapshot: (_scope, input) => active("received", input),
  // Nothing of an invocation survives its process (its callbacks cannot be stored): the snapshot as it is.
  getPersistedSnapshot: (snapshot) => snapshot,
};
