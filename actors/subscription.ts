// The subscription actor: one per SUBSCRIBE, over one JetStream consumer, from the first event to closed.
//
//   open ─┬─ (events behind the cursor) ─▶ replaying ── LIVE ──▶ live
//         └─ (cursor at the end) ─────────────────────────────▶ live
//   replaying | live ── PAUSE (subscriber reads too slowly) ──▶ paused ── RESUME ──▶ replaying | live
//   open ── CLOSE (subscriber gone, runtime stopping, bus failure) ──▶ closed (final)
//
// The pump (runtime/ops/subscribe.ts) is the actor's one child, a callback actor started with `open` and stopped
// when the actor leaves it: it moves events from the consumer to the subscriber and reports only lifecycle
// changes, so the machine costs nothing per event. The actor's end reaches its owner as the emitted `closed`.
import { type AnyEventObject, assign, emit, fromCallback, setup } from "xstate";
import type { MigError } from "../schemas/errors.ts";

export interface SubscriptionPump {
  /** Runs until stopped or failed; `report` feeds LIVE, PAUSE, RESUME and CLOSE back to the actor. */
  run(report: (event: SubscriptionEvent) => void): void;
  stop(): void;
}

export interface SubscriptionInput {
  /** True when the subscription starts behind the end of the topic (it replays first). */
  replaying: boolean;
  pump: SubscriptionPump;
}

/** Emitted once, from the final state, with the error that ended the subscription if any. */
export type SubscriptionEmitted = { type: "closed"; error: MigError | undefined };

interface SubscriptionContext extends SubscriptionInput {
  caughtUp: boolean;
  error: MigError | undefined;
}

export type SubscriptionEvent =
  | { type: "LIVE" }
  | { type: "PAUSE" }
  | { type: "RESUME" }
  | { type: "CLOSE"; error?: MigError };

export const subscriptionMachine = setup({
  types: {
    context: {} as SubscriptionContext,
    input: {} as SubscriptionInput,
    events: {} as SubscriptionEvent,
    emitted: {} as SubscriptionEmitted,
  },
  actors: {
    pump: fromCallback<AnyEventObject, SubscriptionPump>(({ input, sendBack }) => {
      input.run((event) => sendBack(event));
      return () => input.stop();
    }),
  },
  guards: {
    replaying: ({ context }) => context.replaying,
    caughtUp: ({ context }) => context.caughtUp,
  },
  actions: {
    markCaughtUp: assign({ caughtUp: true }),
    keepError: assign({ error: ({ event }) => (event.type === "CLOSE" ? event.error : undefined) }),
    finish: emit(({ context }) => ({ type: "closed", error: context.error })),
  },
}).createMachine({
  id: "subscription",
  context: ({ input }) => ({ ...input, caughtUp: !input.replaying, error: undefined }),
  initial: "open",
  states: {
    open: {
      invoke: { src: "pump", input: ({ context }) => context.pump },
      on: { CLOSE: { target: "closed", actions: "keepError" } },
      initial: "starting",
      states: {
        starting: { always: [{ guard: "replaying", target: "replaying" }, { target: "live" }] },
        replaying: {
          on: {
            LIVE: { target: "live", actions: "markCaughtUp" },
            PAUSE: "paused",
          },
        },
        live: { on: { PAUSE: "paused" } },
        paused: {
          on: {
            LIVE: { actions: "markCaughtUp" },
            RESUME: [{ guard: "caughtUp", target: "live" }, { target: "replaying" }],
          },
        },
      },
    },
    closed: { type: "final", entry: "finish" },
  },
});
