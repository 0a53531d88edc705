// The supervisor: starts every actor, watches its lifecycle through its snapshots, and contains crashes.
import {
  type Actor,
  type AnyActorLogic,
  type AnyActorRef,
  createActor,
  type EmittedFrom,
  fromCallback,
  type InputFrom,
} from "xstate";
import type { Logger } from "../base/logger.ts";
import type { Metrics } from "../base/metrics.ts";

interface LiveActor {
  kind: string;
  state: Tally;
  startedAt: number;
}

/** Counts of one (kind, state): how many actors are in it now, and how many entered it since start. */
interface Tally {
  kind: string;
  state: string;
  live: number;
  entered: number;
  /** `entered` as last reported to the counter. */
  reported: number;
  /** Whether an actor was ever live in it: only then does mig_actors_live have its series (as before). */
  shown: boolean;
}

export interface ActorView {
  id: string;
  kind: string;
  state: string;
  age_ms: number;
}

/** One (kind, state) of the tallies: actors in it now, and how many entered it since the process started. */
export interface TallyView {
  kind: string;
  state: string;
  live: number;
  entered: number;
}

/** An actor that ended lately: the state it ended in and how long it lived. */
export interface FinishedActor {
  kind: string;
  state: string;
  ended_at: number;
  lived_ms: number;
}

/**
 * The last `size` actors that ended, in fixed arrays written in turn: an actor's end costs four stores and no
 * allocation, and the memory stays the same whatever the rate (the admin console reads it, once a second at most).
 */
class FinishedRing {
  private readonly kinds: string[];
  private readonly states: string[];
  private readonly endedAt: Float64Array;
  private readonly lived: Float64Array;
  private next = 0;
  private count = 0;

  constructor(private readonly size: number) {
    this.kinds = new Array<string>(size).fill("");
    this.states = new Array<string>(size).fill("");
    this.endedAt = new Float64Array(size);
    this.lived = new Float64Array(size);
  }

  add(kind: string, state: string, endedAt: number, livedMs: number): void {
    const at = this.next;
    this.kinds[at] = kind;
    this.states[at] = state;
    this.endedAt[at] = endedAt;
    this.lived[at] = livedMs;
    this.next = (at + 1) % this.size;
    if (this.count < this.size) this.count++;
  }

  /** Newest first. */
  list(): FinishedActor[] {
    const out: FinishedActor[] = [];
    for (let i = 1; i <= this.count; i++) {
      const at = (this.next - i + this.size) % this.size;
      out.push({
        kind: this.kinds[at]!,
        state: this.states[at]!,
        ended_at: this.endedAt[at]!,
        lived_ms: this.lived[at]!,
      });
    }
    return out;
  }
}

/** How many ended actors the supervisor remembers (FinishedRing). */
const FINISHED_KEPT = 256;

/** The leaf state of a snapshot value: "received" for { running: "received" }. */
export function leafState(value: unknown): string {
  let current = value;
  while (current !== null && typeof current === "object") {
    const keys = Object.keys(current);
    if (keys.length === 0) break;
    current = (current as Record<string, unknown>)[keys[0]!];
  }
  return typeof current === "string" ? current : "unknown";
}

/** Whether a machine schedules delayed transitions (`after`) anywhere in its states; cached per logic. */
const schedulesDelays = new WeakMap<AnyActorLogic, boolean>();

interface StateNodeLike {
  config?: { after?: unknown };
  states?: Record<string, StateNodeLike>;
}

function hasDelayedTransitions(logic: AnyActorLogic): boolean {
  let known = schedulesDelays.get(logic);
  if (known === undefined) {
    const visit = (node: StateNodeLike | undefined): boolean =>
      node !== undefined && (node.config?.after !== undefined || Object.values(node.states ?? {}).some(visit));
    known = visit((logic as { root?: StateNodeLike }).root);
    schedulesDelays.set(logic, known);
  }
  return known;
}

/**
 * Supervisor of all actors of a runtime. Its own actor (`root`, a callback actor that does nothing) is
 * the parent of the actors it starts, so that they share the root's XState system: a root actor builds
 * a system of its own, and that was about a quarter of an invocation actor's cost (docs/decisions.md, 'Actors
 * share the supervisor's XState system; no parent machine spawns them').
 * The actors are started with `createActor(logic, { parent })`, not spawned by a parent machine: a
 * machine copies its whole `children` record on every spawn and stop, O(live actors) per invocation;
 * here each spawn and exit stays O(1). Their done and error events reach the root and are dropped
 * there: each actor's snapshot observer below has already seen them.
 *
 * Actors whose machine has delayed transitions (`after`, the stream actor) still get a system each:
 * XState keeps a system's timers in one record and, whenever any actor of the system stops, scans that
 * whole record for the stopped actor's timers, so sharing would make every invocation pay for every
 * live stream's timers.
 */
export class Supervisor {
  private readonly live = new Map<string, LiveActor>();
  private readonly root: AnyActorRef = createActor(fromCallback(() => undefined)).start();
  /** Tallies by kind, then state. mig_actors_live and mig_actor_transitions_total are read from them when scraped. */
  private readonly tallies = new Map<string, Map<string, Tally>>();
  private readonly finished = new FinishedRing(FINISHED_KEPT);

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    // Counting in plain fields and handing the totals to prom-client at scrape time, instead of three to
    // seven labelled prom-client calls per actor lifecycle (each hashes its labels): docs/decisions.md, 'One
    // snapshot observer per actor; counts are tallies read at scrape time'.
    metrics.collectActors = () => this.report();
  }

  get size(): number {
    return this.live.size;
  }

  countOf(kind: string): number {
    let n = 0;
    for (const actor of this.live.values()) if (actor.kind === kind) n++;
    return n;
  }

  list(): ActorView[] {
    const now = Date.now();
    return [...this.live].map(([id, a]) => ({ id, kind: a.kind, state: a.state.state, age_ms: now - a.startedAt }));
  }

  /**
   * The `count` longest-lived actors, oldest first. The live table keeps the order actors started in (a change of
   * state updates an entry in place), so these are its first entries: O(count), however many actors live.
   */
  oldest(count: number): ActorView[] {
    const now = Date.now();
    const out: ActorView[] = [];
    for (const [id, a] of this.live) {
      if (out.length >= count) break;
      out.push({ id, kind: a.kind, state: a.state.state, age_ms: now - a.startedAt });
    }
    return out;
  }

  /** Every (kind, state) an actor has been in since start, with how many are in it now. */
  tallyViews(): TallyView[] {
    const out: TallyView[] = [];
    for (const states of this.tallies.values()) {
      for (const t of states.values()) out.push({ kind: t.kind, state: t.state, live: t.live, entered: t.entered });
    }
    return out;
  }

  /** The last actors that ended (at most 256), newest first, each with the state it ended in. */
  recentlyFinished(): FinishedActor[] {
    return this.finished.list();
  }

  /**
   * Starts an actor of `kind`. `onCrash` runs if the actor itself fails (an action throws): the
   * actor is gone, and the caller must answer for it; the process and other actors go on. `heard`
   * receives what the actor emits (its owner's side effects), from before its first state: XState
   * calls such listeners outside its own error handling, so a throw there is contained here the same way.
   */
  spawn<L extends AnyActorLogic>(
    kind: string,
    logic: L,
    input: InputFrom<L>,
    onCrash: (error: unknown) => void,
    heard?: (event: EmittedFrom<L>) => void,
  ): Actor<L> {
    // An actor whose owner hears it gets a system of its own too: only a root actor can be stopped from outside,
    // which containing a failed owner needs.
    const parent = heard || hasDelayedTransitions(logic) ? undefined : this.root;
    const actor = createActor(logic, { input, parent } as never) as Actor<L>;
    const id = actor.sessionId;
    // One snapshot observer per actor, not XState's inspection API: inspection reports every event,
    // microstep and action and measured here it doubled the cost of an invocation actor
    // (docs/decisions.md, 'One snapshot observer per actor; counts are tallies read at scrape time'). Snapshots
    // of the actor itself are all the gauges need; children do not notify it.
    const watch = new ActorWatch(this, id, kind, onCrash);
    actor.subscribe(watch);
    if (heard) {
      actor.on("*", (event) => {
        if (watch.stopped) return;
        try {
          heard(event as EmittedFrom<L>);
        } catch (error) {
          // The snapshot whose emitted event failed reaches the watch after this: it must not count the actor again.
          watch.stopped = true;
          this.crashed(id, kind, error, onCrash);
          actor.stop();
        }
      });
    }
    actor.start();
    return actor;
  }

  /** @internal An actor's snapshot, from its ActorWatch. */
  track(id: string, kind: string, state: string, ended: boolean): void {
    const known = this.live.get(id);
    if (known && known.state.state === state && !ended) return;
    if (known) known.state.live--;
    const tally = known && known.state.state === state ? known.state : this.tally(kind, state);
    if (tally !== known?.state) tally.entered++;
    if (ended) {
      this.live.delete(id);
      const now = Date.now();
      this.finished.add(kind, state, now, known ? now - known.startedAt : 0);
      return;
    }
    tally.live++;
    tally.shown = true;
    if (known) known.state = tally;
    else this.live.set(id, { kind, state: tally, startedAt: Date.now() });
  }

  private tally(kind: string, state: string): Tally {
    let states = this.tallies.get(kind);
    if (!states) this.tallies.set(kind, (states = new Map()));
    let tally = states.get(state);
    if (!tally) states.set(state, (tally = { kind, state, live: 0, entered: 0, reported: 0, shown: false }));
    return tally;
  }

  /** @internal An actor crashed (an action or effect threw), from its ActorWatch. */
  crashed(id: string, kind: string, error: unknown, onCrash: (error: unknown) => void): void {
    this.forget(id);
    this.metrics.actorCrashes.inc({ kind });
    this.logger.error(
      { kind, err: error instanceof Error ? error.message : String(error) },
      "actor crashed; contained by the supervisor",
    );
    onCrash(error);
  }

  private forget(id: string): void {
    const known = this.live.get(id);
    if (!known) return;
    known.state.live--;
    this.live.delete(id);
    const now = Date.now();
    this.finished.add(known.kind, "crashed", now, now - known.startedAt);
  }

  /** Hands the tallies to prom-client; called when the registry is read. */
  private report(): void {
    for (const states of this.tallies.values()) {
      for (const tally of states.values()) {
        const labels = { kind: tally.kind, state: tally.state };
        if (tally.shown) this.metrics.actorsLive.set(labels, tally.live);
        if (tally.entered > tally.reported) {
          this.metrics.actorTransitions.inc(labels, tally.entered - tally.reported);
          tally.reported = tally.entered;
        }
      }
    }
  }
}

/**
 * The supervisor's observer of one actor. A class rather than an object of two closures: XState binds an
 * observer's methods either way, and each closure made per actor also costs tsx's name definition.
 */
class ActorWatch {
  /** Set when the supervisor stopped the actor after its owner failed. */
  stopped = false;

  constructor(
    private readonly supervisor: Supervisor,
    private readonly id: string,
    private readonly kind: string,
    private readonly onCrash: (error: unknown) => void,
  ) {}

  next(snapshot: { status: string; value?: unknown }): void {
    if (this.stopped) return;
    this.supervisor.track(this.id, this.kind, leafState(snapshot.value), snapshot.status !== "active");
  }

  error(error: unknown): void {
    this.supervisor.crashed(this.id, this.kind, error, this.onCrash);
  }
}
