// Compatibility on registration: a new version of a capability must keep the callers and consumers of the versions of
// its line (same major) working, checked with runtime/provider/schema-compat.ts (docs/contracts.md).
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import { type Change, compareContracts } from "./schema-compat.ts";
import { byVersionDescending, compatibilityLine, isPrerelease, versionKey } from "./versions.ts";

/** The schema bodies a check reads: the registered ones, and those arriving with the new version. */
export type SchemaLookup = (uri: string) => JsonObject | undefined;

const BREAKING_SHOWN = 5;

/**
 * Throws MIG_INVALID_REQUEST when `candidate` cannot join `existing` (other registered versions of the same id):
 * - the same version registered with another contract (other schema bodies);
 * - a version whose contract breaks the highest version of its line below it (callers of that one would break), or
 *   whose contract the lowest version of its line above it breaks (a version going backwards). `details.breaking`
 *   lists the changes. A new major (or, below 1.0.0, a new minor) starts a new line and is always accepted;
 *   prereleases are not compared.
 */
export function checkContract(
  candidate: CapabilityDescriptor,
  existing: readonly CapabilityDescriptor[],
  schemaOf: SchemaLookup,
): void {
  const id = candidate.id;
  const version = versionKey(candidate.version);
  const contractOf = (d: CapabilityDescriptor) => ({
    input: schemaOf(d.input_schema_uri),
    output: schemaOf(d.output_schema_uri),
  });
  const mine = contractOf(candidate);
  const others = existing.filter((d) => d.id === id);
  for (const same of others.filter((d) => versionKey(d.version) === version)) {
    if (!sameContract(same, candidate, schemaOf)) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `capability ${id} ${version} is already registered with another contract (input ${same.input_schema_uri}, output ${same.output_schema_uri}); a version never changes its contract: publish the change as a new version`,
        { details: { capability: id, version, field: "descriptor.version" } },
      );
    }
  }
  if (isPrerelease(version)) return;
  const line = compatibilityLine(version);
  const sameLine = [
    ...new Map(
      others
        .filter((d) => !isPrerelease(d.version) && compatibilityLine(d.version) === line)
        .map((d) => [versionKey(d.version), d] as const),
    ).values(),
  ].sort((a, b) => byVersionDescending(a.version, b.version));
  const below = sameLine.find((d) => byVersionDescending(d.version, version) > 0);
  const above = sameLine.filter((d) => byVersionDescending(d.version, version) < 0).at(-1);
  if (below) {
    const report = compareContracts(contractOf(below), mine, { notes: false });
    if (!report.compatible) throw incompatible(id, version, below.version, report.breaking, "below");
  }
  if (above) {
    const report = compareContracts(mine, contractOf(above), { notes: false });
    if (!report.compatible) throw incompatible(id, version, above.version, report.breaking, "above");
  }
}

function sameContract(a: CapabilityDescriptor, b: CapabilityDescriptor, schemaOf: SchemaLookup): boolean {
  for (const field of ["input_schema_uri", "output_schema_uri"] as const) {
    if (a[field] === b[field]) continue;
    // Two URIs may hold the same body (a copy published under a new name): the contract is the bodies.
    const left = schemaOf(a[field]);
    const right = schemaOf(b[field]);
    if (left === undefined || right === undefined || JSON.stringify(left) !== JSON.stringify(right)) return false;
  }
  return true;
}

function incompatible(
  id: string,
  version: string,
  other: string,
  breaking: Change[],
  where: "below" | "above",
): MigError {
  const listed = breaking
    .slice(0, BREAKING_SHOWN)
    .map((c) => `${c.direction} ${c.path || "/"} ${c.rule}: ${c.message}`)
    .join("; ");
  const more = breaking.length > BREAKING_SHOWN ? `; and ${breaking.length - BREAKING_SHOWN} more` : "";
  const [major = 0, minor = 0] = version.split(".").map(Number);
  const next = major > 0 ? `${major + 1}.0.0` : `0.${minor + 1}.0`;
  const message =
    where === "below"
      ? `capability ${id} ${version} breaks callers of ${other} (${breaking.length} breaking change${breaking.length === 1 ? "" : "s"}: ${listed}${more}); a breaking change needs a new major version: publish it as ${next}`
      : `capability ${id} ${version} goes backwards: ${other} is registered and does not keep ${version}'s callers working (${breaking.length} breaking change${breaking.length === 1 ? "" : "s"}: ${listed}${more})`;
  return new MigError("MIG_INVALID_REQUEST", message, {
    details: { capability: id, version, compared_with: other, field: "descriptor.version", breaking },
  });
}
