// The supervisor: actors share its XState system (or get their own when they keep timers), their states are
// counted for /metrics, and an actor whose action throws is contained: its caller is told, the rest go on.
import { describe, expect, it } from "vitest";
import { emit, setup } from "xstate";
import { type InvocationOutcome, invocationLogic } from "../actors/invocation.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { Metrics } from "../runtime/base/metrics.ts";
import { Supervisor } from "../runtime/flow/supervisor.ts";
import { MigError } from "../schemas/errors.ts";

/** A machine whose action throws on BOOM, or on entry when its input says so. */
const fragile = setup({
  types: {
    input: {} as { throwOnStart: boolean },
    context: {} as { throwOnStart: boolean },
    events: {} as { type: "BOOM" } | { type: "DONE" },
  },
  actions: {
    explode: () => {
      throw new Error("boom inside an action");
    },
    maybeExplode: ({ context }) => {
      if (context.throwOnStart) throw new Error("boom on entry");
    },
  },
}).createMachine({
  context: ({ input }) => input,
  initial: "idle",
  states: {
    idle: { entry: "maybeExplode", on: { BOOM: { actions: "explode" }, DONE: "done" } },
    done: { type: "final" },
  },
});

/** A machine that tells its owner of each PING through an emitted event, like the stream actor. */
const chatty = setup({
  types: { events: {} as { type: "PING" }, emitted: {} as { type: "pinged" } },
  actions: { tell: emit({ type: "pinged" }) },
}).createMachine({ initial: "open", states: { open: { on: { PING: { actions: "tell" } } } } });

/** A machine with a delayed transition, like the stream actor. */
const timed = setup({ delays: { soon: 10 } }).createMachine({
  initial: "waiting",
  states: { waiting: { after: { soon: "late" } }, late: { type: "final" } },
});

function start() {
  const metrics = new Metrics();
  const supervisor = new Supervisor(metrics, createLogger("silent"));
  const scrape = () => metrics.registry.metrics();
  return { supervisor, scrape };
}

function invocationInput(outcomes: InvocationOutcome[]) {
  return {
    deadlineMs: 30_000,
    controller: { abort: () => undefined },
    settle: (outcome: InvocationOutcome) => void outcomes.push(outcome),
  };
}

describe("supervisor", () => {
  it("runs invocation actors to their final state and counts each state entered", async () => {
    const { supervisor, scrape } = start();
    const outcomes: InvocationOutcome[] = [];
    const held = supervisor.spawn("invocation", invocationLogic, invocationInput(outcomes), () => undefined);
    held.send({ type: "DISPATCHED" });
    for (let i = 0; i < 3; i++) {
      const actor = supervisor.spawn("invocation", invocationLogic, invocationInput(outcomes), () => undefined);
      actor.send({ type: "DISPATCHED" });
      actor.send({ type: "RESULT", payload: { i } });
    }
    expect(outcomes).toEqual([0, 1, 2].map((i) => ({ ok: true, payload: { i } })));
    expect(supervisor.countOf("invocation")).toBe(1);
    expect(supervisor.list()).toMatchObject([{ kind: "invocation", state: "dispatched" }]);
    const text = await scrape();
    expect(text).toMatch(/mig_actors_live\{kind="invocation",state="dispatched"\} 1/);
    expect(text).toMatch(/mig_actors_live\{kind="invocation",state="received"\} 0/);
    expect(text).toMatch(/mig_actor_transitions_total\{kind="invocation",state="received"\} 4/);
    expect(text).toMatch(/mig_actor_transitions_total\{kind="invocation",state="dispatched"\} 4/);
    expect(text).toMatch(/mig_actor_transitions_total\{kind="invocation",state="completed"\} 3/);
    held.send({ type: "FAIL", error: new MigError("MIG_INTERNAL", "the provider failed") });
    expect(outcomes).toHaveLength(4);
    expect(supervisor.size).toBe(0);
  });

  it("contains an invocation whose outcome effect throws, and ignores events after its final state", () => {
    const { supervisor } = start();
    const crashes: unknown[] = [];
    const throwing = {
      deadlineMs: 30_000,
      controller: { abort: () => undefined },
      settle: () => {
        throw new Error("settle failed");
      },
    };
    const actor = supervisor.spawn("invocation", invocationLogic, throwing, (err) => crashes.push(err));
    actor.send({ type: "DISPATCHED" });
    actor.send({ type: "RESULT", payload: {} });
    expect(crashes.map((err) => (err as Error).message)).toEqual(["settle failed"]);
    expect(actor.getSnapshot().status).toBe("error");
    expect(supervisor.size).toBe(0);

    const outcomes: InvocationOutcome[] = [];
    const aborted: MigError[] = [];
    const cancelled = supervisor.spawn(
      "invocation",
      invocationLogic,
      { ...invocationInput(outcomes), controller: { abort: (e: MigError) => void aborted.push(e) } },
      () => undefined,
    );
    cancelled.send({ type: "CANCEL", reason: "by the caller" });
    cancelled.send({ type: "RESULT", payload: {} });
    cancelled.send({ type: "DEADLINE" });
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({
      ok: false,
      error: { code: "MIG_TIMEOUT", details: { cancelled: true, reason: "by the caller" } },
    });
    expect(aborted).toEqual([(outcomes[0] as { error: MigError }).error]);
    expect(cancelled.getSnapshot()).toMatchObject({ status: "done", value: "cancelled" });
  });

  it("gives actors with delayed transitions a system of their own, and their timers still fire", async () => {
    const { supervisor } = start();
    const a = supervisor.spawn("invocation", invocationLogic, invocationInput([]), () => undefined);
    const b = supervisor.spawn("invocation", invocationLogic, invocationInput([]), () => undefined);
    const t = supervisor.spawn("timed", timed, undefined, () => undefined);
    expect(a.system).toBe(b.system);
    expect(t.system).not.toBe(a.system);
    await new Promise<void>((resolve) => t.subscribe({ complete: () => resolve() }));
    expect(t.getSnapshot().value).toBe("late");
    expect(supervisor.countOf("timed")).toBe(0);
  });

  it("contains an action that throws: the caller is told, the crash is counted, other actors go on", async () => {
    const { supervisor, scrape } = start();
    const crashes: unknown[] = [];
    const bystander = supervisor.spawn("fragile", fragile, { throwOnStart: false }, (err) =>
      crashes.push(["bystander", err]),
    );
    const victim = supervisor.spawn("fragile", fragile, { throwOnStart: false }, (err) => crashes.push(err));
    victim.send({ type: "BOOM" });
    const onEntry = supervisor.spawn("fragile", fragile, { throwOnStart: true }, (err) => crashes.push(err));
    expect(crashes.map((err) => (err as Error).message)).toEqual(["boom inside an action", "boom on entry"]);
    expect(victim.getSnapshot().status).toBe("error");
    expect(onEntry.getSnapshot().status).toBe("error");
    expect(supervisor.countOf("fragile")).toBe(1);

    // The shared system still serves: the bystander finishes, and a new actor runs its whole lifecycle.
    bystander.send({ type: "DONE" });
    expect(bystander.getSnapshot().status).toBe("done");
    const outcomes: InvocationOutcome[] = [];
    const next = supervisor.spawn("invocation", invocationLogic, invocationInput(outcomes), () => undefined);
    next.send({ type: "DISPATCHED" });
    next.send({ type: "RESULT", payload: {} });
    expect(outcomes).toEqual([{ ok: true, payload: {} }]);
    expect(supervisor.size).toBe(0);
    expect(await scrape()).toMatch(/mig_actor_crashes_total\{kind="fragile"\} 2/);
  });

  it("hands an actor's emitted events to its owner, and contains an owner that throws on one", async () => {
    const { supervisor, scrape } = start();
    const heard: string[] = [];
    const crashes: unknown[] = [];
    const steady = supervisor.spawn(
      "chatty",
      chatty,
      undefined,
      () => undefined,
      (event) => heard.push(event.type),
    );
    const clumsy = supervisor.spawn(
      "chatty",
      chatty,
      undefined,
      (err) => crashes.push(err),
      () => {
        throw new Error("the owner failed");
      },
    );
    clumsy.send({ type: "PING" });
    steady.send({ type: "PING" });
    expect(heard).toEqual(["pinged"]);
    expect(crashes.map((err) => (err as Error).message)).toEqual(["the owner failed"]);
    clumsy.send({ type: "PING" });
    expect(crashes).toHaveLength(1);
    expect(supervisor.countOf("chatty")).toBe(1);
    expect(await scrape()).toMatch(/mig_actor_crashes_total\{kind="chatty"\} 1/);
  });
});
