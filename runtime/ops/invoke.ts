// Unary INVOKE: validates the request, authorizes it, honours idempotency, and runs one invocation actor.
import { performance } from "node:perf_hooks";
import type { Actor } from "xstate";
import { type InvocationInput, type InvocationOutcome, invocationLogic } from "../../actors/invocation.ts";
import { MigError } from "../../schemas/errors.ts";
import type {
  CapabilityDescriptor,
  InvokeResponse,
  JsonObject,
  MessageHeader,
  StreamPreference,
} from "../../schemas/types.ts";
import {
  endSpan,
  isRemote,
  parentOf,
  recorded,
  type Span,
  SpanKind,
  startSpan,
  tracing,
  withTraceparent,
} from "../base/tracing.ts";
import type { RuntimeCore } from "../core.ts";
import type { Principal } from "../protocol/principal.ts";
import type { GoneSignal, RequestContext } from "../protocol/request-context.ts";
import { settleHandler } from "../provider/handler-result.ts";
import { checkOutput, providerError } from "../provider/output.ts";
import type { InvocationContext } from "../provider/provider.ts";
import type { RegisteredCapability } from "../provider/registry.ts";
import { IDEMPOTENCY_META_KEY, IdempotencyStore } from "../store/idempotency.ts";
import { acceptInvocation } from "./invocation-request.ts";

const PREFERENCES: readonly StreamPreference[] = ["unary", "server_stream", "bidi_stream"];

export async function invoke(
  core: RuntimeCore,
  body: unknown,
  request: RequestContext,
  pathCapability?: string,
): Promise<InvokeResponse> {
  const { header, entry, payload } = acceptInvocation(core, body, request, {
    capability: pathCapability,
    where: "the path or in the body",
    chooseMode: checkUnary,
  });
  const id = entry.descriptor.id;
  const { descriptor } = entry;

  const inflight = core.work.invocations.size;
  if (inflight >= core.config.capacity) {
    // Admission control: past its capacity a runtime sheds load instead of queueing without bound.
    throw new MigError(
      "MIG_BACKPRESSURE",
      `this runtime already has ${inflight} invocations in flight (its capacity); retry shortly`,
      {
        details: { inflight, capacity: core.config.capacity },
      },
    );
  }
  const held = core.work.invocationsOf(header.tenant_id);
  const share = core.config.tenantMaxInflight ?? Math.ceil(core.config.capacity / 2);
  if (held >= share) {
    // One tenant's share of the capacity: slow or abandoned work of one tenant cannot shut the others out.
    throw new MigError(
      "MIG_BACKPRESSURE",
      `tenant ${header.tenant_id} already has ${held} invocations in flight on this runtime, its share of the capacity (MIG_TENANT_MAX_INFLIGHT); retry when some finish`,
      {
        details: { inflight: held, limit: share, limit_scope: "tenant", retry_after_ms: TENANT_SHARE_RETRY_MS },
      },
    );
  }

  const turn = core.fairShare.enter(header.tenant_id, header.deadline_ms);
  if (turn) await turn;
  let outcome: InvocationOutcome;
  try {
    outcome = await run(core, entry, header, request, payload);
  } finally {
    core.fairShare.leave(header.tenant_id);
  }
  if (!outcome.ok) throw outcome.error;
  return { header, capability: id, payload: outcome.payload, result_schema_uri: descriptor.output_schema_uri };
}

/** The invocation itself, through the idempotency store when the caller gave a key. */
async function run(
  core: RuntimeCore,
  entry: RegisteredCapability,
  header: MessageHeader,
  request: RequestContext,
  payload: JsonObject,
): Promise<InvocationOutcome> {
  const id = entry.descriptor.id;
  let outcome: InvocationOutcome;
  if (header.idempotency_key !== undefined) {
    const key = IdempotencyStore.keyOf(header.tenant_id, id, header.idempotency_key);
    const deadlineAt = Date.now() + header.deadline_ms;
    const result = await core.idempotency.run(key, deadlineAt, () =>
      execute(core, entry, header, request.principal, payload, request.gone, request.span),
    );
    if (result.replayed) core.metrics.idempotentReplays.inc({ capability: id });
    if (result.notKept !== undefined) header.meta = { ...header.meta, [IDEMPOTENCY_META_KEY]: result.notKept };
    outcome = result.outcome;
  } else {
    outcome = await execute(core, entry, header, request.principal, payload, request.gone, request.span);
  }
  return outcome;
}

/** A hint for a tenant over its share: about the time a short invocation of another caller takes to finish. */
const TENANT_SHARE_RETRY_MS = 100;

/** A unary INVOKE: the capability offers unary, and one that promises exactly_once gets an idempotency key. */
function checkUnary(raw: JsonObject, entry: RegisteredCapability, header: MessageHeader): void {
  // An empty string is "unset": clients that send zero values for absent fields (Go's encoding/json) send "".
  const preference = raw.stream_preference === "" ? undefined : raw.stream_preference;
  const { id, modes } = entry.descriptor;
  if (preference !== undefined && preference !== null && preference !== "unary") {
    if (!PREFERENCES.includes(preference as StreamPreference)) {
      throw new MigError("MIG_INVALID_REQUEST", `stream_preference must be one of ${PREFERENCES.join(", ")}`);
    }
    if (!modes.includes(preference as StreamPreference)) {
      throw new MigError(
        "MIG_UNSUPPORTED_CAPABILITY",
        `capability ${id} does not offer ${String(preference)}; it offers ${modes.join(", ")}`,
      );
    }
    // Streams are answered by the streaming bindings (runtime/ops/stream.ts); a unary answer cannot carry them.
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `stream_preference ${String(preference)} needs a streaming binding: WebSocket GET /mig/v0.1/stream, or SSE from POST /mig/v0.1/invoke/${id}`,
    );
  }
  if (!modes.includes("unary")) {
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${id} has no unary mode; it offers ${modes.join(", ")}`,
    );
  }
  if (entry.descriptor.qos?.delivery_semantics === "exactly_once" && header.idempotency_key === undefined) {
    // The promise is kept per idempotency key: without one, a retry could not be told from a new call.
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `capability ${id} promises exactly_once delivery: send header.idempotency_key`,
    );
  }
}

/** Runs one invocation actor around the provider's handler; never throws, always settles once. */
export function execute(
  core: RuntimeCore,
  entry: RegisteredCapability,
  header: MessageHeader,
  principal: Principal,
  payload: JsonObject,
  gone?: GoneSignal,
  /** The operation's span, when tracing is on; without it the actor's span continues the header's traceparent. */
  parent?: Span,
): Promise<InvocationOutcome> {
  const messageId = header.message_id;
  if (core.work.invocations.has(messageId)) {
    return Promise.resolve({
      ok: false,
      error: new MigError(
        "MIG_INVALID_REQUEST",
        `message_id ${messageId} is already in flight; give every invocation its own UUID`,
      ),
    });
  }
  return new Promise<InvocationOutcome>((resolve) =>
    new Invocation(core, entry, header, resolve).run(principal, payload, gone, parent),
  );
}

/** The deadline timer's callback, shared by all invocations (setTimeout passes the actor). */
function sendDeadline(actor: Invocation["actor"]): void {
  actor.send({ type: "DEADLINE" });
}

/**
 * One invocation's bookkeeping around its actor, and the actor's input: the actor keeps its input as
 * its context (actors/invocation.ts), so this object is that context and no other is made. Methods on
 * one object rather than a closure per step: each closure is an allocation (and, under tsx, a name
 * definition) on the hot path.
 */
class Invocation implements InvocationInput {
  readonly controller = new LazyAbortController();
  private readonly started = performance.now();
  private settled = false;
  /** The deadline is a plain timer that sends DEADLINE, not a delayed transition of the machine (see actors/invocation.ts). */
  private deadline: NodeJS.Timeout | undefined;
  /** The signal of its caller having gone (RequestContext.gone), listened to until the invocation settles. */
  private gone: GoneSignal | undefined;
  /** The actor's span, when tracing is on. */
  private span: Span | undefined;
  actor!: Actor<typeof invocationLogic>;

  constructor(
    private readonly core: RuntimeCore,
    private readonly entry: RegisteredCapability,
    private readonly header: MessageHeader,
    private readonly resolve: (outcome: InvocationOutcome) => void,
  ) {}

  get deadlineMs(): number {
    return this.header.deadline_ms;
  }

  run(principal: Principal, payload: JsonObject, gone?: GoneSignal, parent?: Span): void {
    const { core, header, entry } = this;
    const { descriptor } = entry;
    const actor = core.supervisor.spawn("invocation", invocationLogic, this, () =>
      this.settle({
        ok: false,
        error: new MigError(
          "MIG_INTERNAL",
          `the invocation ${header.message_id} failed inside the runtime; it was contained`,
        ),
      }),
    );
    this.actor = actor;
    core.work.startInvocation(header.message_id, {
      tenant: header.tenant_id,
      subject: principal.subject,
      capability: descriptor.id,
      actor,
    });
    if (!this.settled) this.deadline = setTimeout(sendDeadline, header.deadline_ms, actor);
    actor.send({ type: "DISPATCHED" });
    if (gone) {
      this.cancelWhenGone(gone);
      if (this.settled) return; // its caller was gone before it started: the handler is not run
    }

    if (tracing.on && recorded(parent, header.traceparent)) return this.runTraced(payload, principal, parent);
    settleHandler(
      () => entry.handler(payload, new HandlerContext(header, principal, descriptor, this.controller)),
      (value) => this.succeed(value),
      (err) => this.fail(err),
    );
  }

  /**
   * The same run, with spans: the actor's run (ended when it settles) and, inside it, the handler's, whose
   * traceparent the handler's header carries: a remote provider's work continues from it
   * (runtime/fleet/remote-dispatch.ts sends the header on), and so can a local provider's own calls.
   */
  private runTraced(payload: JsonObject, principal: Principal, parentSpan: Span | undefined): void {
    const { header, entry } = this;
    const attributes = {
      "mig.capability": entry.descriptor.id,
      "mig.version": entry.descriptor.version,
      "mig.message_id": header.message_id,
      "mig.tenant": header.tenant_id,
    };
    const parent = parentOf(parentSpan, header.traceparent);
    // An actor whose parent is another process's span (the work a worker took from the bus) serves that request.
    const kind = isRemote(parent) ? SpanKind.SERVER : SpanKind.INTERNAL;
    const actorSpan = startSpan("mig.actor.invocation", kind, parent, attributes);
    this.span = actorSpan;
    const handlerKind = entry.route === undefined ? SpanKind.INTERNAL : SpanKind.CLIENT;
    const handlerSpan = startSpan("mig.handler", handlerKind, parentOf(actorSpan, undefined), attributes);
    const context = new HandlerContext(
      withTraceparent(header, handlerSpan),
      principal,
      entry.descriptor,
      this.controller,
    );
    settleHandler(
      () => entry.handler(payload, context),
      (value) => {
        endSpan(handlerSpan);
        this.succeed(value);
      },
      (err) => {
        endSpan(handlerSpan, err);
        this.fail(err);
      },
    );
  }

  /** Cancels the invocation when its caller has gone (RequestContext.gone), now or later. */
  private cancelWhenGone(gone: GoneSignal): void {
    this.gone = gone;
    if (gone.aborted) return this.callerGone();
    gone.addEventListener("abort", this.callerGone, { once: true });
  }

  /**
   * The listener on the caller-gone signal, made with the invocation. Two closures made in cancelWhenGone instead (the
   * listener and its remover) made about 1.2 MB survive every young collection of an HTTP server at one caller, whose
   * collections then took 5 ms instead of 1.3 (docs/decisions.md, 'The caller-gone listener').
   */
  private readonly callerGone = (): void => {
    this.actor.send({ type: "CANCEL", reason: String(this.gone?.reason) });
  };

  /** Called by the actor's final state, once; a second call (a crash after settling) is ignored. */
  settle(outcome: InvocationOutcome): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.deadline);
    this.gone?.removeEventListener("abort", this.callerGone);
    const { core, header } = this;
    const capability = this.entry.descriptor.id;
    core.work.endInvocation(header.message_id, header.tenant_id);
    if (this.span) endActorSpan(this.span, outcome);
    core.metrics.invocations.inc({ capability, outcome: outcomeLabel(outcome) });
    core.metrics.invocationSeconds.observe(
      { capability, tenant: header.tenant_id },
      (performance.now() - this.started) / 1000,
    );
    this.resolve(outcome);
  }

  private succeed(value: unknown): void {
    const problem = checkOutput(this.core, this.entry, value);
    this.actor.send(problem ? { type: "FAIL", error: problem } : { type: "RESULT", payload: value as JsonObject });
  }

  private fail(err: unknown): void {
    if (this.controller.aborted) return;
    this.actor.send({
      type: "FAIL",
      error: providerError(this.core, this.entry.descriptor.id, this.header.message_id, err),
    });
  }
}

/** What a unary handler gets: its signal from a getter on the prototype, not one defined per call. */
class HandlerContext implements InvocationContext {
  readonly #controller: LazyAbortController;

  constructor(
    readonly header: MessageHeader,
    readonly principal: Principal,
    readonly capability: CapabilityDescriptor,
    controller: LazyAbortController,
  ) {
    this.#controller = controller;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }
}

/**
 * An AbortController made only when the handler reads its signal: most handlers never do, and making
 * one per invocation showed in profiles (docs/decisions.md, 'The handler's AbortController is made when it reads
 * `signal`'). A signal read after the abort is born aborted, with the same reason.
 */
class LazyAbortController {
  private controller: AbortController | undefined;
  private reason: MigError | undefined;

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: MigError): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** Ends an actor's span with its outcome, marking the cancel or the deadline that ended it. */
function endActorSpan(span: Span, outcome: InvocationOutcome): void {
  if (outcome.ok) return endSpan(span);
  const label = outcomeLabel(outcome);
  if (label === "cancelled") span.addEvent("cancel", { "mig.reason": outcome.error.message });
  else if (label === "timed_out") span.addEvent("deadline");
  endSpan(span, outcome.error);
}

function outcomeLabel(outcome: InvocationOutcome): string {
  if (outcome.ok) return "completed";
  if (outcome.error.details?.cancelled === true) return "cancelled";
  if (outcome.error.code === "MIG_TIMEOUT") return "timed_out";
  return "failed";
}
