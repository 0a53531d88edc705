// The harness's own vocabulary: profiles, checks, results and the options of a run.

/** Conformance profiles of MIG v0.1; each includes the ones it builds on. */
export type Profile = "core" | "streaming" | "evented" | "full";

export const PROFILES: readonly Profile[] = ["core", "streaming", "evented", "full"];

/** Which profiles' checks a run of `profile` includes. */
export const PROFILE_INCLUDES: Readonly<Record<Profile, readonly Profile[]>> = {
  core: ["core"],
  streaming: ["core", "streaming"],
  evented: ["core", "evented"],
  full: ["core", "streaming", "evented", "full"],
};

/** The wire a check talks over; "any" checks need no endpoint (harness prerequisites). */
export type Binding = "http" | "nats" | "grpc" | "mcp" | "any";

export type Status = "pass" | "fail" | "skip";

/** Envelope names understood by `schemas/envelopes.ts`. */
export type EnvelopeName =
  | "HelloResponse"
  | "DiscoverResponse"
  | "InvokeResponse"
  | "CancelAck"
  | "HeartbeatAck"
  | "ErrorEnvelope"
  | "PublishAck"
  | "EventMessage"
  | "StreamFrame";

export type ValidationResult = { ok: true } | { ok: false; errors: string[] };

/** The signature `schemas/envelopes.ts` exports as `validateEnvelope`. */
export type ValidateEnvelope = (name: EnvelopeName, value: unknown) => ValidationResult;

export interface ConformanceOptions {
  /** Base URL of the HTTP binding, e.g. http://127.0.0.1:8080. */
  http?: string;
  /** NATS server URL where the endpoint serves `mig.v0_1.<tenant>.…`. */
  nats?: string;
  /** host:port of the gRPC binding (plaintext), e.g. 127.0.0.1:9090. */
  grpc?: string;
  /** URL of an MCP endpoint (Streamable HTTP) in front of the same MIG server, e.g. http://127.0.0.1:8080/mcp. */
  mcp?: string;
  /** Tenant used in every request (default "acme"). */
  tenant?: string;
  /** Bearer JWT sent as `Authorization` (and as a NATS header). */
  token?: string;
  /**
   * A second bearer JWT of the same tenant that lacks a scope some capability needs (its `scope`/`scopes` claims
   * are read to know which): DISCOVER with it must hide what DISCOVER with `token` shows behind that scope.
   */
  limitedToken?: string;
  /** Profile to check (default "core"). */
  profile?: Profile;
  /** Per-request and per-wait timeout in milliseconds (default 5000). */
  timeoutMs?: number;
  /** Envelope validator; defaults to `validateEnvelope` from `schemas/envelopes.ts`. */
  validate?: ValidateEnvelope;
  /** Run only checks whose id starts with one of these prefixes (plus nothing else). */
  only?: readonly string[];
  /** Called as each check finishes, in run order. */
  onResult?: (result: CheckResult) => void;
}

export interface CheckResult {
  id: string;
  /** Checklist item the check covers (see conformance/checklist.ts). */
  item: string;
  profile: Profile;
  binding: Binding;
  description: string;
  /** True for a check of a convention (this project's or the reference's), which does not count toward the profile. */
  convention: boolean;
  status: Status;
  /** Why it failed or was skipped, or a short note on a pass. */
  reason?: string;
  durationMs: number;
}

export interface Tally {
  passed: number;
  failed: number;
  skipped: number;
}

export interface ConformanceReport extends Tally {
  profile: Profile;
  /** Every check run, standard and convention alike, in run order. */
  results: CheckResult[];
  /** The convention checks, counted apart: `passed`, `failed` and `skipped` above count the standard's checks only. */
  conventions: Tally;
}
