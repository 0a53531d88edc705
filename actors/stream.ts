// The stream actor: one per streaming invocation, from acceptance to exactly one terminal frame.
//
//   running ─────────────────────────────────────────────── after deadline ──▶ timed_out (final, aborts work)
//   ├─ opening ── OPENED ─▶ streaming
//   │                        ├─ flowing ── PAUSED ─▶ paused ── RESUMED ─▶ flowing
//   │                        │                       └─ stall bound after the last credit ──▶ failed (MIG_BACKPRESSURE)
//   │                        └─ PROVIDER_DONE ─▶ draining ── DRAINED ─▶ completed (final)
//   │                                            └─ after stall bound ──▶ failed (MIG_BACKPRESSURE)
//   ├─ FAIL ──▶ failed (final, aborts work)
//   └─ CANCEL ──▶ cancelled (final, aborts work)
//
// Like the invocation actor it is lean: no child actors, the deadline and the stall bound are the
// only delayed transitions, and flow control (counting frames, waking the provider) lives in the
// stream session beside it, which feeds PAUSED / RESUMED / DRAINED in as events. A provider that is
// faster than its consumer waits for credit again right after each credit, so the session tells the
// actor of a resume only when the provider is still not waiting at the end of that turn; a paused
// stream that keeps receiving credits stays `paused`, and its stall bound counts from the last
// credit (the timer re-arms for the time left). Every final state calls `finish` exactly once, and
// the session writes the one terminal frame from it.
import { setup } from "xstate";
import { MigError } from "../schemas/errors.ts";

export type StreamEnd =
  | { state: "completed" }
  | { state: "cancelled"; reason: string; error: MigError }
  | { state: "failed"; error: MigError }
  | { state: "timed_out"; error: MigError };

export interface StreamInput {
  deadlineMs: number;
  /** How long the consumer may leave the provider paused (or the end undelivered) before MIG_BACKPRESSURE. */
  stallMs: number;
  /** Milliseconds since the consumer last gave credit: a paused stream stalls only after stallMs of these. */
  sinceCredit: () => number;
  finish: (end: StreamEnd) => void;
}

export type StreamEvent =
  | { type: "OPENED" }
  | { type: "PAUSED" }
  | { type: "RESUMED" }
  | { type: "PROVIDER_DONE" }
  | { type: "DRAINED" }
  | { type: "FAIL"; error: MigError }
  | { type: "CANCEL"; reason: string; error: MigError };

/** The error a cancelled stream ends with (its provider's signal reason): made by the session, which aborts first. */
export function cancelError(reason: string): MigError {
  return new MigError("MIG_TIMEOUT", `the stream was cancelled${reason ? `: ${reason}` : ""}`, {
    retryable: false,
    details: { cancelled: true, reason },
  });
}

function backpressure(context: StreamInput, what: string): MigError {
  return new MigError("MIG_BACKPRESSURE", `the consumer ${what} for ${context.stallMs} ms; the stream was ended`, {
    details: { stall_ms: context.stallMs },
  });
}

export const streamMachine = setup({
  types: {
    context: {} as StreamInput,
    input: {} as StreamInput,
    events: {} as StreamEvent,
  },
  delays: {
    deadline: ({ context }) => context.deadlineMs,
    stall: ({ context }) => context.stallMs,
    stallLeft: ({ context }) => Math.max(0, context.stallMs - context.sinceCredit()),
  },
  guards: {
    stalled: ({ context }) => context.sinceCredit() >= context.stallMs,
  },
  actions: {
    endCompleted: ({ context }) => context.finish({ state: "completed" }),
    endFailed: ({ context, event }) => {
      if (event.type === "FAIL") context.finish({ state: "failed", error: event.error });
    },
    endStalled: ({ context }) => context.finish({ state: "failed", error: backpressure(context, "read nothing") }),
    endUndelivered: ({ context }) =>
      context.finish({ state: "failed", error: backpressure(context, "did not take the last frames") }),
    endCancelled: ({ context, event }) => {
      if (event.type === "CANCEL") context.finish({ state: "cancelled", reason: event.reason, error: event.error });
    },
    endTimedOut: ({ context }) => {
      const error = new MigError("MIG_TIMEOUT", `the stream exceeded its deadline of ${context.deadlineMs} ms`, {
        details: { deadline_ms: context.deadlineMs },
      });
      context.finish({ state: "timed_out", error });
    },
  },
}).createMachine({
  id: "stream",
  context: ({ input }) => input,
  initial: "running",
  states: {
    running: {
      initial: "opening",
      after: { deadline: { target: "timed_out", actions: "endTimedOut" } },
      on: {
        FAIL: { target: "failed", actions: "endFailed" },
        CANCEL: { target: "cancelled", actions: "endCancelled" },
      },
      states: {
        opening: { on: { OPENED: "streaming", PROVIDER_DONE: "draining" } },
        streaming: {
          initial: "flowing",
          on: { PROVIDER_DONE: "draining" },
          states: {
            flowing: { on: { PAUSED: "paused" } },
            paused: {
              on: { RESUMED: "flowing" },
              after: {
                stallLeft: [
                  { guard: "stalled", target: "#stream.failed", actions: "endStalled" },
                  // Credits came meanwhile: wait out the rest of the bound from the last one.
                  { target: "paused", reenter: true },
                ],
              },
            },
          },
        },
        draining: {
          on: { DRAINED: { target: "#stream.completed", actions: "endCompleted" } },
          after: { stall: { target: "#stream.failed", actions: "endUndelivered" } },
        },
      },
    },
    completed: { type: "final" },
    failed: { type: "final" },
    cancelled: { type: "final" },
    timed_out: { type: "final" },
  },
});
