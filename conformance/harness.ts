// Runs the conformance checks of a profile against a MIG endpoint and reports one result per check.

import { CheckFailure, CheckSkipped } from "./assert.ts";
import type { Check } from "./check.ts";
import { ALL_CHECKS } from "./checks/index.ts";
import { CheckContext } from "./context.ts";
import {
  type CheckResult,
  type ConformanceOptions,
  type ConformanceReport,
  PROFILE_INCLUDES,
  PROFILES,
  type Status,
  type Tally,
  type ValidateEnvelope,
} from "./types.ts";

export { ALL_CHECKS } from "./checks/index.ts";
export type { CheckResult, ConformanceOptions, ConformanceReport, Profile, Tally } from "./types.ts";

const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Runs every check of `options.profile` (default core) in order; never throws for a failing endpoint. The
 * report's counts are those of the standard's checks; convention checks are counted apart (`conventions`).
 */
export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const profile = options.profile ?? "core";
  if (!PROFILES.includes(profile))
    throw new Error(`invalid profile "${profile}" - expected one of ${PROFILES.join(", ")}`);
  const tenant = options.tenant ?? "acme";
  checkTenant(tenant);
  if (options.http !== undefined) checkUrl("http", options.http, ["http:", "https:"]);
  if (options.nats !== undefined) checkUrl("nats", options.nats, ["nats:", "tls:", "ws:", "wss:"]);
  if (options.mcp !== undefined) checkUrl("mcp", options.mcp, ["http:", "https:"]);
  if (options.grpc !== undefined && !/^(\[[0-9a-fA-F:]+\]|[^:\s/]+):\d{1,5}$/.test(options.grpc)) {
    throw new Error(`invalid grpc address "${options.grpc}" - expected host:port`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  const loaded = options.validate ? { validator: options.validate } : await loadValidator();
  const ctx = new CheckContext({
    http: options.http,
    nats: options.nats,
    grpc: options.grpc,
    mcp: options.mcp,
    tenant,
    token: options.token,
    limitedToken: options.limitedToken,
    timeoutMs,
    validator: loaded.validator,
    validatorError: loaded.error,
  });

  const included = PROFILE_INCLUDES[profile];
  const selected = ALL_CHECKS.filter(
    (c) => included.includes(c.profile) && (!options.only || options.only.some((prefix) => c.id.startsWith(prefix))),
  );
  const results: CheckResult[] = [];
  try {
    for (const check of selected) {
      const result = await runCheck(check, ctx, options, timeoutMs);
      results.push(result);
      options.onResult?.(result);
    }
  } finally {
    await ctx.close();
  }
  const tally = (of: CheckResult[]): Tally => {
    const count = (status: Status) => of.filter((r) => r.status === status).length;
    return { passed: count("pass"), failed: count("fail"), skipped: count("skip") };
  };
  return {
    profile,
    results,
    ...tally(results.filter((r) => !r.convention)),
    conventions: tally(results.filter((r) => r.convention)),
  };
}

async function runCheck(
  check: Check,
  ctx: CheckContext,
  options: ConformanceOptions,
  timeoutMs: number,
): Promise<CheckResult> {
  const started = performance.now();
  const done = (status: Status, reason?: string): CheckResult => ({
    id: check.id,
    item: check.item,
    profile: check.profile,
    binding: check.binding,
    description: check.description,
    convention: check.convention !== undefined,
    status,
    ...(reason ? { reason } : {}),
    durationMs: Math.round(performance.now() - started),
  });
  if (check.binding === "http" && !options.http) return done("skip", "no --http endpoint given");
  if (check.binding === "nats" && !options.nats) return done("skip", "no --nats URL given");
  if (check.binding === "grpc" && !options.grpc) return done("skip", "no --grpc address given");
  if (check.binding === "mcp" && !options.mcp) return done("skip", "no MCP endpoint given (mcp+http://…)");

  ctx.checkId = check.id;
  let timer: NodeJS.Timeout | undefined;
  // A check makes a few requests, each bounded by timeoutMs; this bounds a check that hangs anyway.
  const limit = timeoutMs * 4;
  const overrun = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`the check did not finish within ${limit} ms`)), limit);
  });
  try {
    const note = await Promise.race([check.run(ctx), overrun]);
    return done("pass", note || undefined);
  } catch (err) {
    if (err instanceof CheckSkipped) return done("skip", err.message);
    if (err instanceof CheckFailure) return done("fail", err.message);
    return done("fail", `harness error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Loads `validateEnvelope` from schemas/envelopes.ts; a failure is reported by the envelope-schemas check. */
async function loadValidator(): Promise<{ validator?: ValidateEnvelope; error?: string }> {
  try {
    const mod = (await import("../schemas/envelopes.ts")) as { validateEnvelope?: unknown };
    if (typeof mod.validateEnvelope !== "function") return { error: "it does not export validateEnvelope" };
    return { validator: mod.validateEnvelope as ValidateEnvelope };
  } catch (err) {
    return { error: err instanceof Error ? err.message.split("\n")[0] : String(err) };
  }
}

/** The tenant becomes a NATS subject token, so it is checked like one. */
function checkTenant(tenant: string): void {
  if (tenant === "") throw new Error("invalid tenant - cannot be empty");
  const bad = [" ", ".", "*", ">", "\t", "\r", "\n"].find((c) => tenant.includes(c));
  if (bad) throw new Error(`invalid tenant "${tenant}" - cannot contain '${bad.trim() || "whitespace"}'`);
}

function checkUrl(name: string, value: string, protocols: string[]): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`invalid ${name} URL "${value}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new Error(
      `invalid ${name} URL "${value}" - expected ${protocols.map((p) => p.replace(":", "://")).join(" or ")}`,
    );
  }
}
