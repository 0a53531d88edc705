// A capability version's lifecycle: deprecated (with a message), and a sunset after which calls are refused. Read
// from the descriptor's `lifecycle` extension field (docs/contracts.md, "Deprecation and sunset").
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";

/** The answer header's meta key that tells a caller the version it used is deprecated. */
export const DEPRECATION_META_KEY = "mig.deprecation";

/** RFC 3339 date-time: a date, `T`, a time, and a zone (Z or an offset). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const MAX_MESSAGE = 500;

export interface Lifecycle {
  /** A person's sentence (e.g. "use 2.x"), or true without one. */
  deprecated: string | true;
  /** When calls start being refused (epoch ms), and as written. */
  sunsetAt?: number | undefined;
  sunset?: string | undefined;
}

/**
 * The lifecycle a descriptor declares, or undefined for a version in good standing. Throws MIG_INVALID_REQUEST naming
 * the field for one that is malformed. A sunset alone implies deprecation.
 */
export function lifecycleOf(descriptor: CapabilityDescriptor): Lifecycle | undefined {
  const value = (descriptor as { lifecycle?: unknown }).lifecycle;
  if (value === undefined || value === null) return undefined;
  const id = descriptor.id;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw invalid(id, "descriptor.lifecycle", "must be an object: {deprecated, sunset}");
  }
  const { deprecated, sunset } = value as { deprecated?: unknown; sunset?: unknown };
  if (deprecated !== undefined && typeof deprecated !== "boolean" && typeof deprecated !== "string") {
    throw invalid(id, "descriptor.lifecycle.deprecated", "must be a boolean or a message");
  }
  if (typeof deprecated === "string" && (deprecated.trim() === "" || deprecated.length > MAX_MESSAGE)) {
    throw invalid(id, "descriptor.lifecycle.deprecated", `as a message must hold 1 to ${MAX_MESSAGE} characters`);
  }
  let sunsetAt: number | undefined;
  if (sunset !== undefined) {
    if (typeof sunset !== "string" || !RFC3339.test(sunset) || Number.isNaN(Date.parse(sunset))) {
      throw invalid(
        id,
        "descriptor.lifecycle.sunset",
        `${JSON.stringify(sunset)} is not an RFC 3339 date-time (e.g. 2027-01-31T00:00:00Z)`,
      );
    }
    sunsetAt = Date.parse(sunset);
  }
  if (deprecated === false && sunset !== undefined) {
    throw invalid(id, "descriptor.lifecycle.deprecated", "is false, but a version with a sunset is deprecated");
  }
  if (!deprecated && sunset === undefined) return undefined;
  return {
    deprecated: typeof deprecated === "string" ? deprecated : true,
    sunsetAt,
    sunset: typeof sunset === "string" ? sunset : undefined,
  };
}

function invalid(capability: string, field: string, what: string): MigError {
  return new MigError("MIG_INVALID_REQUEST", `capability ${capability}: ${field} ${what}`, {
    details: { field, capability },
  });
}

/** Whether calls to this version are refused now. */
export function pastSunset(lifecycle: Lifecycle | undefined, now: number): boolean {
  return lifecycle?.sunsetAt !== undefined && now >= lifecycle.sunsetAt;
}

/** What the answer header's meta carries for a call to a deprecated version. */
export function deprecationMeta(version: string, lifecycle: Lifecycle, replacement: string | undefined): JsonObject {
  const meta: JsonObject = { version, deprecated: lifecycle.deprecated };
  if (lifecycle.sunset !== undefined) meta.sunset = lifecycle.sunset;
  if (replacement !== undefined) meta.replacement_version = replacement;
  return meta;
}
