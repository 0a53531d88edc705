// The demo provider: observatory.models.infer, the standard's default capability, answering like its reference; and the
// conformance fixtures (mig.fixture.*), which the conformance harness needs to see cancel, deadlines and flow control.
import { setTimeout as sleep } from "node:timers/promises";
import type { CapabilityDescriptor } from "../../schemas/types.ts";
import { type CapabilityDefinition, defineCapability, defineStreamingCapability } from "./provider.ts";

export const INFER_INPUT_SCHEMA = "schema://observatory/models/infer-input/v1";
export const INFER_OUTPUT_SCHEMA = "schema://observatory/models/infer-output/v1";

export const observatoryInfer = defineCapability(
  {
    id: "observatory.models.infer",
    version: "1.0.0",
    modes: ["unary", "server_stream"],
    input_schema_uri: INFER_INPUT_SCHEMA,
    output_schema_uri: INFER_OUTPUT_SCHEMA,
    event_topics: ["observatory.inference.completed"],
    auth_scopes: ["capability:infer"],
    qos: {
      max_payload_bytes: 1024 * 1024,
      supports_replay: true,
      delivery_semantics: "at_least_once",
      supports_ordering: true,
    },
  },
  // Same answer shape as the standard's reference gateway, so clients written against it work here.
  (payload, { capability }) => ({
    result: "ok",
    echo: payload,
    capability: capability.id,
    delivery_qos: capability.qos?.delivery_semantics ?? "best_effort",
  }),
  {
    [INFER_INPUT_SCHEMA]: {
      type: "object",
      properties: { input: { type: "string" } },
      required: ["input"],
    },
    [INFER_OUTPUT_SCHEMA]: {
      type: "object",
      properties: { result: { type: "string" } },
      required: ["result"],
    },
  },
  // server_stream: one frame per whitespace-separated token of the input, then a terminal result.
  async (payload, { emit, signal }) => {
    const tokens = String(payload.input).split(/\s+/).filter(Boolean);
    for (let index = 0; index < tokens.length; index++) {
      signal.throwIfAborted();
      await emit({ token: tokens[index], index });
    }
    return { result: "ok", tokens: tokens.length };
  },
);

export default [observatoryInfer];

// ---- Conformance fixtures -------------------------------------------------------------------------------------
//
// Capabilities under `mig.fixture.` that let the conformance harness (conformance/, docs/conformance.md) observe what
// no ordinary capability shows over the wire: a slow invocation to cancel or time out, a stream that outpaces its
// consumer or outlives its deadline, a capability behind a scope, and a probe that tells what became of a run the
// harness tagged (still running, completed, or aborted and why), so a check can see that work really stopped.

export const FIXTURE_PREFIX = "mig.fixture.";
/** The scope `mig.fixture.scoped` needs: a token without it must not see that capability in DISCOVER. */
export const FIXTURE_SCOPE = "fixture:scoped";

const FIXTURE_OUTPUT = "schema://mig/fixture/output/v1";
const TAG = { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" };

interface FixtureRun {
  state: "running" | "completed" | "aborted";
  /** Frames whose emit() resolved (streams), 0 for unary runs. */
  emitted: number;
  /** The MIG code the run was aborted with (the provider signal's reason). */
  reason?: string;
}

/** Runs by tenant and tag, newest last; bounded so that a caller inventing tags cannot grow it without limit. */
const runs = new Map<string, FixtureRun>();
const MAX_RUNS = 1024;

function runKey(tenant: string, tag: string): string {
  return `${tenant}\u0000${tag}`;
}

/** Records a tagged run (an untagged one is not recorded, and gets a throwaway record). */
function track(tenant: string, tag: unknown): FixtureRun {
  const run: FixtureRun = { state: "running", emitted: 0 };
  if (typeof tag !== "string") return run;
  const key = runKey(tenant, tag);
  runs.delete(key);
  runs.set(key, run);
  if (runs.size > MAX_RUNS) runs.delete(runs.keys().next().value as string);
  return run;
}

function aborted(run: FixtureRun, signal: AbortSignal, err: unknown): unknown {
  const cause = signal.aborted ? signal.reason : err;
  run.state = "aborted";
  const code = (cause as { code?: unknown } | undefined)?.code;
  run.reason = typeof code === "string" ? code : "MIG_INTERNAL";
  return cause;
}

const fixture = (id: string, modes: CapabilityDescriptor["modes"], input: string, authScopes: string[] = []) => ({
  id: `${FIXTURE_PREFIX}${id}`,
  version: "1.0.0",
  modes,
  input_schema_uri: input,
  output_schema_uri: FIXTURE_OUTPUT,
  auth_scopes: authScopes,
  qos: { delivery_semantics: "best_effort" as const, supports_replay: false, supports_ordering: true },
});

const SLOW_INPUT = "schema://mig/fixture/slow-input/v1";
/** Waits `delay_ms` (up to 10 minutes), unless cancelled or past its deadline: the target of in-flight CANCEL. */
const fixtureSlow = defineCapability(
  fixture("slow", ["unary"], SLOW_INPUT),
  async (payload, { signal, header }) => {
    const run = track(header.tenant_id, payload.tag);
    const delayMs = Number(payload.delay_ms);
    try {
      await sleep(delayMs, undefined, { signal });
    } catch (err) {
      throw aborted(run, signal, err);
    }
    run.state = "completed";
    return { slept_ms: delayMs };
  },
  {
    [SLOW_INPUT]: {
      type: "object",
      properties: { delay_ms: { type: "integer", minimum: 0, maximum: 600_000 }, tag: TAG },
      required: ["delay_ms"],
      additionalProperties: false,
    },
    [FIXTURE_OUTPUT]: { type: "object" },
  },
);

const COUNT_INPUT = "schema://mig/fixture/count-input/v1";
/**
 * server_stream: frames `{index, pad?}` for index 0 … count-1, `interval_ms` apart, each padded with `pad_bytes`
 * characters, then the terminal `{count}`. It awaits every emit(), so a runtime with flow control pauses it.
 */
const fixtureCount = defineStreamingCapability(
  fixture("count", ["server_stream"], COUNT_INPUT),
  async (payload, { emit, signal, header }) => {
    const run = track(header.tenant_id, payload.tag);
    const count = Number(payload.count);
    const intervalMs = Number(payload.interval_ms ?? 0);
    const pad = "x".repeat(Number(payload.pad_bytes ?? 0));
    try {
      for (let index = 0; index < count; index++) {
        if (intervalMs > 0) await sleep(intervalMs, undefined, { signal });
        signal.throwIfAborted();
        await emit(pad ? { index, pad } : { index });
        run.emitted = index + 1;
      }
    } catch (err) {
      throw aborted(run, signal, err);
    }
    run.state = "completed";
    return { count };
  },
  {
    [COUNT_INPUT]: {
      type: "object",
      properties: {
        count: { type: "integer", minimum: 0, maximum: 1_000_000 },
        interval_ms: { type: "integer", minimum: 0, maximum: 60_000 },
        pad_bytes: { type: "integer", minimum: 0, maximum: 16_384 },
        tag: TAG,
      },
      required: ["count"],
      additionalProperties: false,
    },
    [FIXTURE_OUTPUT]: { type: "object" },
  },
);

const OPEN_INPUT = "schema://mig/fixture/open-input/v1";
/** Answers `{ok: true}`; needs the scope `fixture:scoped`, so DISCOVER shows it only to tokens that carry it. */
const fixtureScoped = defineCapability(
  fixture("scoped", ["unary"], OPEN_INPUT, [FIXTURE_SCOPE]),
  () => ({ ok: true }),
  { [OPEN_INPUT]: { type: "object" }, [FIXTURE_OUTPUT]: { type: "object" } },
);

const PROBE_INPUT = "schema://mig/fixture/probe-input/v1";
/** `{tag}` → `{tag, state, emitted, reason?}` of the caller's tenant's run with that tag (`state: "unknown"` if none). */
const fixtureProbe = defineCapability(
  fixture("probe", ["unary"], PROBE_INPUT),
  (payload, { header }) => {
    const tag = String(payload.tag);
    const run = runs.get(runKey(header.tenant_id, tag));
    if (!run) return { tag, state: "unknown", emitted: 0 };
    return { tag, state: run.state, emitted: run.emitted, ...(run.reason ? { reason: run.reason } : {}) };
  },
  {
    [PROBE_INPUT]: { type: "object", properties: { tag: TAG }, required: ["tag"], additionalProperties: false },
    [FIXTURE_OUTPUT]: { type: "object" },
  },
);

const FIXTURES: readonly CapabilityDefinition[] = [fixtureSlow, fixtureCount, fixtureScoped, fixtureProbe];

/**
 * The conformance fixtures, to register beside the demo capability (`mig start` with fixtures, tests). A function
 * rather than an exported list: `mig worker` hosts every definition its modules export, lists included, and the
 * default worker module is this file, which should keep serving only observatory.models.infer.
 */
export function demoFixtures(): CapabilityDefinition[] {
  return [...FIXTURES];
}
