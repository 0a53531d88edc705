// The invocation actor: one per unary INVOKE, from acceptance to exactly one final outcome.
//
//   received ── DISPATCHED ─▶ dispatched ── RESULT ──▶ completed (final)
//   received | dispatched ── FAIL ──▶ failed (final)
//                         ── CANCEL ──▶ cancelled (final, aborts work)
//                         ── DEADLINE ──▶ timed_out (final, aborts work)
//
// Kept lean on purpose (see docs/ARCHITECTURE.md): no child actors, no delayed transition (the deadline
// arrives as an event from a plain timer that execute() in runtime/invoke.ts starts and clears: XState's
// scheduler cost about a third of the actor, docs/decisions.md), and the handler's result arrives as an
// event. Each final state settles the caller exactly once. The states are flat, with FAIL, CANCEL and
// DEADLINE handled at the machine's root, rather than nested under a `running` parent: every snapshot and
// transition of a nested machine walks both levels, and the flat one was 10-15 % cheaper per lifecycle.
// Once a final state is reached the actor is done, so the root's handlers no longer apply.
import { setup } from "xstate";
import { MigError } from "../runtime/errors.ts";
import type { JsonObject } from "../runtime/types.ts";

export type InvocationOutcome = { ok: true; payload: JsonObject } | { ok: false; error: MigError };

export interface InvocationInput {
  deadlineMs: number;
  /** Aborts the handler's work (an AbortController, or runtime/invoke.ts's lazy one). */
  controller: { abort(reason: MigError): void };
  settle: (outcome: InvocationOutcome) => void;
}

export type InvocationEvent =
  | { type: "DISPATCHED" }
  | { type: "RESULT"; payload: JsonObject }
  | { type: "FAIL"; error: MigError }
  | { type: "CANCEL"; reason: string }
  | { type: "DEADLINE" };

export const invocationMachine = setup({
  types: {
    context: {} as InvocationInput,
    input: {} as InvocationInput,
    events: {} as InvocationEvent,
  },
  actions: {
    deliverResult: ({ context, event }) => {
      if (event.type === "RESULT") context.settle({ ok: true, payload: event.payload });
    },
    deliverFailure: ({ context, event }) => {
      if (event.type === "FAIL") context.settle({ ok: false, error: event.error });
    },
    abortForDeadline: ({ context }) => {
      const error = new MigError("MIG_TIMEOUT", `the invocation exceeded its deadline of ${context.deadlineMs} ms`, {
        details: { deadline_ms: context.deadlineMs },
      });
      context.controller.abort(error);
      context.settle({ ok: false, error });
    },
    abortForCancel: ({ context, event }) => {
      const reason = event.type === "CANCEL" ? event.reason : "";
      // The standard's reference answers a cancelled invocation with MIG_TIMEOUT; details tell the two apart.
      const error = new MigError("MIG_TIMEOUT", `the invocation was cancelled${reason ? `: ${reason}` : ""}`, {
        retryable: false,
        details: { cancelled: true, reason },
      });
      context.controller.abort(error);
      context.settle({ ok: false, error });
    },
  },
}).createMachine({
  id: "invocation",
  context: ({ input }) => input,
  initial: "received",
  on: {
    DEADLINE: ".timed_out",
    FAIL: ".failed",
    CANCEL: ".cancelled",
  },
  states: {
    received: { on: { DISPATCHED: "dispatched" } },
    dispatched: { on: { RESULT: "completed" } },
    completed: { type: "final", entry: "deliverResult" },
    failed: { type: "final", entry: "deliverFailure" },
    cancelled: { type: "final", entry: "abortForCancel" },
    timed_out: { type: "final", entry: "abortForDeadline" },
  },
});
