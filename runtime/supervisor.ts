// The supervisor: starts every actor, watches its lifecycle through XState's inspection API, and contains crashes.
import { createActor, type Actor, type AnyActorLogic, type InputFrom, type InspectionEvent } from "xstate";
import type { Logger } from "./logger.ts";
import type { Metrics } from "./metrics.ts";

interface LiveActor {
  kind: string;
  state: string;
  startedAt: number;
}

export interface ActorView {
  id: string;
  kind: string;
  state: string;
  age_ms: number;
}

/** The leaf state of a snapshot value: "received" for { running: "received" }. */
function leafState(value: unknown): string {
  let current = value;
  while (current !== null && typeof current === "object") {
    const keys = Object.keys(current);
    if (keys.length === 0) break;
    current = (current as Record<string, unknown>)[keys[0]!];
  }
  return typeof current === "string" ? current : "unknown";
}

/**
 * Supervisor of all actors of a runtime. It is a plain object rather than a parent machine: XState
 * copies a parent's whole `children` record on every spawn and stop, which costs O(live actors) per
 * invocation; here each spawn and exit is O(1) (see docs/decisions.md).
 */
export class Supervisor {
  private readonly live = new Map<string, LiveActor>();
  private readonly inspectors = new Map<string, (event: InspectionEvent) => void>();

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {}

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
    return [...this.live].map(([id, a]) => ({ id, kind: a.kind, state: a.state, age_ms: now - a.startedAt }));
  }

  /**
   * Starts an actor of `kind`. `onCrash` runs if the actor itself fails (an action throws): the
   * actor is gone, and the caller must answer for it; the process and other actors go on.
   */
  spawn<L extends AnyActorLogic>(kind: string, logic: L, input: InputFrom<L>, onCrash: (error: unknown) => void): Actor<L> {
    const actor = createActor(logic, { input, inspect: this.inspectorFor(kind) } as never) as Actor<L>;
    actor.subscribe({
      error: (error) => {
        this.forget(actor.sessionId);
        this.metrics.actorCrashes.inc({ kind });
        this.logger.error({ kind, err: error instanceof Error ? error.message : String(error) }, "actor crashed; contained by the supervisor");
        onCrash(error);
      },
    });
    actor.start();
    return actor;
  }

  private inspectorFor(kind: string): (event: InspectionEvent) => void {
    let inspector = this.inspectors.get(kind);
    if (!inspector) {
      inspector = (event) => {
        // Only the spawned actor itself is tracked; its children (e.g. a subscription's pump) are part of it.
        if (event.type !== "@xstate.snapshot" || event.actorRef.sessionId !== event.rootId) return;
        const snapshot = event.snapshot as { status: string; value?: unknown };
        this.track(event.actorRef.sessionId, kind, leafState(snapshot.value), snapshot.status !== "active");
      };
      this.inspectors.set(kind, inspector);
    }
    return inspector;
  }

  private track(id: string, kind: string, state: string, ended: boolean): void {
    const known = this.live.get(id);
    if (known && known.state === state && !ended) return;
    if (known) this.metrics.actorsLive.dec({ kind, state: known.state });
    if (!known || known.state !== state) this.metrics.actorTransitions.inc({ kind, state });
    if (ended) {
      this.live.delete(id);
      return;
    }
    if (known) known.state = state;
    else this.live.set(id, { kind, state, startedAt: Date.now() });
    this.metrics.actorsLive.inc({ kind, state });
  }

  private forget(id: string): void {
    const known = this.live.get(id);
    if (!known) return;
    this.metrics.actorsLive.dec({ kind: known.kind, state: known.state });
    this.live.delete(id);
  }
}
