// Capability versions: semver checks, the pin a caller puts in its header's meta, and which registered version a call
// gets (docs/contracts.md, "Versions side by side").
import semver from "semver";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";

/** The header's meta key a caller pins a version with: an exact version (`1.0.1`) or a range (`^1.2`, `1.x`). */
export const VERSION_META_KEY = "mig.capability_version";
const PIN_FIELD = `header.meta["${VERSION_META_KEY}"]`;

/** Strict semver: no `v` prefix, no loose spellings. */
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/**
 * The key a version is registered under: build metadata is left out, as semver gives `1.0.0+a` and `1.0.0+b` the
 * same precedence, so they are one version (two contracts under it would be drift).
 */
export function versionKey(version: string): string {
  return semver.parse(version)?.version ?? version;
}

/** Refuses a descriptor's version that is not strict semver, naming the field. */
export function checkVersion(version: unknown, capability: string): string {
  if (typeof version !== "string" || !SEMVER.test(version) || semver.valid(version) === null) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `capability ${capability}: version ${JSON.stringify(version)} is not semver (e.g. 1.0.0); field descriptor.version`,
      { details: { field: "descriptor.version", capability } },
    );
  }
  return version;
}

/**
 * The compatibility line a version belongs to: its major, and for 0.x its minor too (semver lets anything change
 * below 1.0.0, and a caret range treats 0.y the same way). Versions of one line must stay compatible.
 */
export function compatibilityLine(version: string): string {
  const parsed = semver.parse(version);
  if (!parsed) return version;
  return parsed.major > 0 ? String(parsed.major) : `0.${parsed.minor}`;
}

export function isPrerelease(version: string): boolean {
  return (semver.prerelease(version)?.length ?? 0) > 0;
}

/** Highest precedence first. */
export function byVersionDescending(a: string, b: string): number {
  return semver.rcompare(a, b);
}

/** A caller's pin: an exact version, or a range of versions. */
export type VersionPin = { exact: string; text: string } | { range: string; text: string };

/** The pin in a request header's meta, or undefined when the caller set none (an empty string counts as none). */
export function pinOf(meta: JsonObject | undefined): VersionPin | undefined {
  const value = meta?.[VERSION_META_KEY];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string" || value.length > 200) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${PIN_FIELD} must be a string: a semver version (1.0.1) or range (^1.2)`,
      { details: { field: PIN_FIELD } },
    );
  }
  const text = value.trim();
  const exact = semver.valid(text);
  if (exact !== null && SEMVER.test(text)) return { exact: versionKey(exact), text: value };
  const range = semver.validRange(text);
  if (range !== null) return { range, text: value };
  throw new MigError(
    "MIG_INVALID_REQUEST",
    `${PIN_FIELD} ${JSON.stringify(value)} is neither a semver version (1.0.1) nor a semver range (^1.2, ~1.2.3, 1.x, >=1.0.0 <2.0.0)`,
    { details: { field: PIN_FIELD, value } },
  );
}

export function satisfies(version: string, pin: VersionPin): boolean {
  return "exact" in pin ? versionKey(version) === pin.exact : semver.satisfies(version, pin.range);
}
