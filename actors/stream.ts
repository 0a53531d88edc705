// The stream actor: one per streaming invocation, from acceptance to exactly one terminal frame.
//
//   running ───────────────────────────────────────────────────── after deadline ──▶ timed_out (final)
//   ├─ opening ── OPENED ─▶ streaming
//   │                        ├─ flowing ── WAITING ─▶ held
//   │                        │   ▲                     ├─ paused ── CREDITED ─▶ resuming
//   │                        │   │                     │   └─ after stall ──▶ failed (MIG_BACKPRESSURE)
//   │                        │   │                     └─ resuming, recheck, lastCheck ── TURN_END (waiting) ─▶ paused
//   │                        │   └──────────────── TURN_END (not waiting, not yielding) ──┘
//   │                        └─ PROVIDER_DONE ─▶ draining ── DRAINED ─▶ completed (final)
//   │                                            └─ after stall ──▶ failed (MIG_BACKPRESSURE)
//   ├─ FAIL ──▶ failed (final)
//   └─ CANCEL ──▶ cancelled (final)
//
// The session beside the actor counts frames and credits. It tells the actor when its provider starts waiting for
// credit (WAITING, from `flowing`) and when credit lets a waiting provider go (CREDITED, from `paused`); it asks the
// actor's state (the tags `held` and `waiting`) rather than keeping its own, so it sends nothing while the actor
// already knows. A provider that is faster than its consumer waits again right after each credit, in the same turn
// of the event loop, so a release counts as a resume only when the turn ends with the provider not waiting: the
// actor asks for a TURN_END on the next turn (`checkTurn`), and goes back to `paused` if the provider waits again.
// This costs the actor two events per turn of the event loop, not two per frame. A provider in the middle of a yield
// (it gives the event loop a turn after every window of frames) has not shown yet whether it will wait: the actor
// asks up to twice more (`recheck`, `lastCheck`). Each return to `paused` starts the stall bound afresh, so it counts
// from the last turn in which credit came.
//
// The actor does no I/O: it tells its owner what happened through emitted events (`actor.on`), which
// tests observe directly or replace through `.provide()`:
//   paused / resumed   the provider began / stopped waiting for credit (the paused-streams gauge);
//   checkTurn          send TURN_END on the next turn of the event loop;
//   end                the stream's one end, emitted once, by the transition into a final state.
import { assertEvent, emit, setup } from "xstate";
import { MigError } from "../schemas/errors.ts";

export type StreamEnd =
  | { state: "completed" }
  | { state: "cancelled"; reason: string; error: MigError }
  | { state: "failed"; error: MigError }
  | { state: "timed_out"; error: MigError };

export interface StreamInput {
  deadlineMs: number;
  /** How long the consumer may leave the provider waiting (or the end undelivered) before MIG_BACKPRESSURE. */
  stallMs: number;
}

export type StreamEvent =
  | { type: "OPENED" }
  | { type: "WAITING" }
  | { type: "CREDITED" }
  | { type: "TURN_END"; waiting: boolean; yielding: boolean }
  | { type: "PROVIDER_DONE" }
  | { type: "DRAINED" }
  | { type: "FAIL"; error: MigError }
  | { type: "CANCEL"; reason: string; error: MigError };

export type StreamEmitted =
  | { type: "paused" }
  | { type: "resumed" }
  | { type: "checkTurn" }
  | { type: "end"; end: StreamEnd };

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
    emitted: {} as StreamEmitted,
    tags: {} as "held" | "waiting",
  },
  delays: {
    deadline: ({ context }) => context.deadlineMs,
    stall: ({ context }) => context.stallMs,
  },
  guards: {
    providerWaits: ({ event }) => event.type === "TURN_END" && event.waiting,
    providerYielding: ({ event }) => event.type === "TURN_END" && event.yielding,
  },
  actions: {
    announcePaused: emit({ type: "paused" }),
    announceResumed: emit({ type: "resumed" }),
    checkTurn: emit({ type: "checkTurn" }),
    endCompleted: emit({ type: "end", end: { state: "completed" } }),
    endFailed: emit(({ event }) => {
      assertEvent(event, "FAIL");
      return { type: "end", end: { state: "failed", error: event.error } };
    }),
    endStalled: emit(({ context }) => ({
      type: "end",
      end: { state: "failed", error: backpressure(context, "read nothing") },
    })),
    endUndelivered: emit(({ context }) => ({
      type: "end",
      end: { state: "failed", error: backpressure(context, "did not take the last frames") },
    })),
    endCancelled: emit(({ event }) => {
      assertEvent(event, "CANCEL");
      return { type: "end", end: { state: "cancelled", reason: event.reason, error: event.error } };
    }),
    endTimedOut: emit(({ context }) => ({
      type: "end",
      end: {
        state: "timed_out",
        error: new MigError("MIG_TIMEOUT", `the stream exceeded its deadline of ${context.deadlineMs} ms`, {
          details: { deadline_ms: context.deadlineMs },
        }),
      },
    })),
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
            flowing: { on: { WAITING: "held" } },
            held: {
              tags: "held",
              entry: "announcePaused",
              exit: "announceResumed",
              initial: "paused",
              states: {
                paused: {
                  tags: "waiting",
                  on: { CREDITED: "resuming" },
                  after: { stall: { target: "#stream.failed", actions: "endStalled" } },
                },
                resuming: {
                  entry: "checkTurn",
                  on: {
                    TURN_END: [
                      { guard: "providerWaits", target: "paused" },
                      { guard: "providerYielding", target: "recheck" },
                      { target: "#stream.running.streaming.flowing" },
                    ],
                  },
                },
                recheck: {
                  entry: "checkTurn",
                  on: {
                    TURN_END: [
                      { guard: "providerWaits", target: "paused" },
                      { guard: "providerYielding", target: "lastCheck" },
                      { target: "#stream.running.streaming.flowing" },
                    ],
                  },
                },
                lastCheck: {
                  entry: "checkTurn",
                  on: {
                    TURN_END: [
                      { guard: "providerWaits", target: "paused" },
                      { target: "#stream.running.streaming.flowing" },
                    ],
                  },
                },
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
