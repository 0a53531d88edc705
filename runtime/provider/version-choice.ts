// Which registered version of a capability a call gets: the caller's pin, or the default rule; a version past its
// sunset is refused with its replacement named (docs/contracts.md, "Versions side by side").
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor } from "../../schemas/types.ts";
import { type Lifecycle, pastSunset } from "./lifecycle.ts";
import { isPrerelease, satisfies, VERSION_META_KEY, type VersionPin } from "./versions.ts";

/** What the choice reads of a registered version (runtime/provider/registry.ts). */
export interface VersionEntry {
  descriptor: CapabilityDescriptor;
  lifecycle?: Lifecycle | undefined;
  prerelease?: boolean | undefined;
}

/**
 * The version a call gets among `ordered` (one capability's versions, highest first): with a pin, the highest version
 * it matches; without one, the highest stable version (a prerelease only when no stable version is registered).
 * Versions past their sunset are skipped; throws MIG_UNSUPPORTED_CAPABILITY when nothing is left, naming the versions
 * that exist, or the version that reached its sunset and its replacement.
 */
export function chooseVersion<Entry extends VersionEntry>(
  ordered: readonly Entry[],
  pin: VersionPin | undefined,
  now: number,
): Entry {
  const id = ordered[0]!.descriptor.id;
  const matching = pin ? ordered.filter((entry) => satisfies(entry.descriptor.version, pin)) : ordered;
  if (matching.length === 0) {
    const versions = ordered.map((entry) => entry.descriptor.version);
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${id} has no version matching ${JSON.stringify(pin!.text)} (${VERSION_META_KEY}); it has ${versions.join(", ")}`,
      { details: { capability: id, requested_version: pin!.text, available_versions: versions } },
    );
  }
  let chosen: Entry | undefined;
  for (const entry of matching) {
    if (pastSunset(entry.lifecycle, now)) continue;
    if (pin || !(entry.prerelease ?? isPrerelease(entry.descriptor.version))) return entry;
    chosen ??= entry;
  }
  if (chosen) return chosen;
  throw sunsetError(matching[0]!, ordered);
}

/** The version a caller of a deprecated one should move to: the highest stable version neither deprecated nor past its sunset. */
export function replacementOf(ordered: readonly VersionEntry[]): string | undefined {
  return ordered.find((entry) => entry.lifecycle === undefined && !isPrerelease(entry.descriptor.version))?.descriptor
    .version;
}

function sunsetError(entry: VersionEntry, ordered: readonly VersionEntry[]): MigError {
  const { id, version } = entry.descriptor;
  const replacement = replacementOf(ordered);
  const instead =
    replacement === undefined
      ? "no replacement version is registered"
      : `use ${replacement} (${VERSION_META_KEY}: "${replacement}", or no pin)`;
  const details: Record<string, unknown> = {
    capability: id,
    version,
    sunset: entry.lifecycle?.sunset,
    available_versions: ordered.map((other) => other.descriptor.version),
  };
  if (replacement !== undefined) details.replacement_version = replacement;
  return new MigError(
    "MIG_UNSUPPORTED_CAPABILITY",
    `capability ${id} ${version} reached its sunset (${entry.lifecycle?.sunset}) and is no longer served; ${instead}`,
    { details },
  );
}
