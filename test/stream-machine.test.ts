// The stream actor alone, on a simulated clock: when a waiting provider counts as paused and as resumed, the stall
// bound counted from the last credit, the one end of every way out, and an implementation swapped with .provide().
import { describe, expect, it } from "vitest";
import { createActor, SimulatedClock } from "xstate";
import { cancelError, type StreamEmitted, streamMachine } from "../actors/stream.ts";
import { MigError } from "../schemas/errors.ts";

const STALL_MS = 1_000;
const DEADLINE_MS = 60_000;

/** A started stream actor on its own clock, with every event it emitted, in order. */
function open(machine = streamMachine) {
  const clock = new SimulatedClock();
  const actor = createActor(machine, { input: { deadlineMs: DEADLINE_MS, stallMs: STALL_MS }, clock });
  const heard: StreamEmitted[] = [];
  actor.on("*", (event) => heard.push(event));
  actor.start();
  actor.send({ type: "OPENED" });
  const kinds = () => heard.map((event) => event.type);
  const ends = () => heard.filter((event) => event.type === "end").map((event) => event.end);
  return { actor, clock, heard, kinds, ends };
}

describe("stream actor", () => {
  it("is paused while its provider waits, and ends with MIG_BACKPRESSURE when no credit comes within the bound", () => {
    const { actor, clock, kinds, ends } = open();
    actor.send({ type: "WAITING" });
    expect(actor.getSnapshot().hasTag("held")).toBe(true);
    expect(kinds()).toEqual(["paused"]);
    clock.increment(STALL_MS - 1);
    expect(ends()).toEqual([]);
    clock.increment(1);
    expect(kinds()).toEqual(["paused", "resumed", "end"]);
    expect(ends()[0]).toMatchObject({ state: "failed", error: { code: "MIG_BACKPRESSURE" } });
    expect(actor.getSnapshot().value).toBe("failed");
  });

  it("counts the stall bound from the last turn with credit, however many credits a paused stream got", () => {
    const { actor, clock, kinds, ends } = open();
    actor.send({ type: "WAITING" });
    for (let i = 0; i < 5; i++) {
      clock.increment(STALL_MS - 1);
      // A credit lets the provider go, and it waits again in the same turn: still paused, the bound starts again.
      actor.send({ type: "CREDITED" });
      actor.send({ type: "TURN_END", waiting: true, yielding: false });
      expect(actor.getSnapshot().hasTag("waiting")).toBe(true);
    }
    expect(ends()).toEqual([]);
    expect(kinds().filter((kind) => kind === "paused")).toEqual(["paused"]);
    expect(kinds()).not.toContain("resumed");
    clock.increment(STALL_MS);
    expect(ends()[0]).toMatchObject({ state: "failed", error: { code: "MIG_BACKPRESSURE" } });
  });

  it("resumes only when the turn after a credit ends without the provider waiting again", () => {
    const { actor, kinds } = open();
    actor.send({ type: "WAITING" });
    actor.send({ type: "CREDITED" });
    expect(kinds()).toEqual(["paused", "checkTurn"]);
    expect(actor.getSnapshot().hasTag("held")).toBe(true);
    expect(actor.getSnapshot().hasTag("waiting")).toBe(false);
    actor.send({ type: "TURN_END", waiting: false, yielding: false });
    expect(kinds()).toEqual(["paused", "checkTurn", "resumed"]);
    expect(actor.getSnapshot().value).toEqual({ running: { streaming: "flowing" } });
  });

  it("asks twice more while the provider is yielding, then counts it as resumed", () => {
    const { actor, kinds } = open();
    actor.send({ type: "WAITING" });
    actor.send({ type: "CREDITED" });
    actor.send({ type: "TURN_END", waiting: false, yielding: true });
    actor.send({ type: "TURN_END", waiting: false, yielding: true });
    expect(actor.getSnapshot().hasTag("held")).toBe(true);
    expect(kinds().filter((kind) => kind === "checkTurn")).toHaveLength(3);
    actor.send({ type: "TURN_END", waiting: false, yielding: true });
    expect(kinds().at(-1)).toBe("resumed");
    expect(actor.getSnapshot().value).toEqual({ running: { streaming: "flowing" } });
  });

  it("completes once its provider is done and the consumer took every frame; an undelivered end stalls", () => {
    const done = open();
    done.actor.send({ type: "WAITING" });
    done.actor.send({ type: "PROVIDER_DONE" });
    done.actor.send({ type: "DRAINED" });
    expect(done.kinds()).toEqual(["paused", "resumed", "end"]);
    expect(done.ends()).toEqual([{ state: "completed" }]);

    const stuck = open();
    stuck.actor.send({ type: "PROVIDER_DONE" });
    stuck.clock.increment(STALL_MS);
    expect(stuck.ends()).toMatchObject([{ state: "failed", error: { code: "MIG_BACKPRESSURE" } }]);
  });

  it("ends once on a cancel, a failure or its deadline, and ignores what comes after", () => {
    const cancelled = open();
    cancelled.actor.send({ type: "CANCEL", reason: "user", error: cancelError("user") });
    cancelled.actor.send({ type: "FAIL", error: new MigError("MIG_INTERNAL", "late") });
    cancelled.clock.increment(DEADLINE_MS);
    expect(cancelled.ends()).toMatchObject([{ state: "cancelled", reason: "user" }]);

    const failed = open();
    failed.actor.send({ type: "WAITING" });
    failed.actor.send({ type: "FAIL", error: new MigError("MIG_INTERNAL", "the provider failed") });
    expect(failed.kinds()).toEqual(["paused", "resumed", "end"]);
    expect(failed.ends()).toMatchObject([{ state: "failed", error: { message: "the provider failed" } }]);

    const late = open();
    late.clock.increment(DEADLINE_MS);
    expect(late.ends()).toMatchObject([{ state: "timed_out", error: { code: "MIG_TIMEOUT" } }]);
    late.actor.send({ type: "DRAINED" });
    expect(late.ends()).toHaveLength(1);
  });

  it("takes another implementation of an action through .provide()", () => {
    // The turn check done at once instead of on the next turn of the event loop.
    const immediate = streamMachine.provide({
      actions: { checkTurn: ({ self }) => self.send({ type: "TURN_END", waiting: false, yielding: false }) },
    });
    const { actor, kinds } = open(immediate);
    actor.send({ type: "WAITING" });
    actor.send({ type: "CREDITED" });
    expect(kinds()).toEqual(["paused", "resumed"]);
    expect(actor.getSnapshot().value).toEqual({ running: { streaming: "flowing" } });
  });
});
