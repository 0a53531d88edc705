// The registrar's review of a provider's registration before it enters the registry: each capability's descriptor,
// its schemas (valid, immutable, stored in the fleet's schema store) and its compatibility with the other versions
// registered now. What fails is left out of the record and named to the provider (docs/contracts.md).
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { Registration, RegistrationRefusal } from "../protocol/provider-protocol.ts";
import { checkContract } from "../provider/contract-check.ts";
import { checkDescriptor } from "../provider/provider.ts";
import { versionKey } from "../provider/versions.ts";
import type { FleetHost } from "./fleet-host.ts";
import type { ProviderEntry } from "./provider-entry.ts";

type Offered = Registration["capabilities"][number];

export interface ReviewOutcome {
  /** The capabilities that may enter the registry. */
  accepted: Offered[];
  refused: RegistrationRefusal["refused"];
  /** The refusals found by this review (not remembered from an earlier beat): the ones to log. */
  fresh: RegistrationRefusal["refused"];
}

export class RegistrationReview {
  /**
   * The verdict on each capability a provider offered at its last beat, by the capability's JSON: its next beats
   * (every couple of seconds) are not reviewed again. Null for accepted.
   */
  private readonly verdicts = new Map<string, Map<string, MigError | null>>();

  constructor(
    private readonly runtime: FleetHost,
    private readonly providers: () => ReadonlyMap<string, ProviderEntry>,
  ) {}

  /**
   * Reviews each capability of `record`. Throws only what is not the provider's fault (the schema store cannot be
   * reached): then nothing is written, and the provider's next beat tries again.
   */
  async review(record: Registration): Promise<ReviewOutcome> {
    const providerId = record.provider_id;
    const before = this.verdicts.get(providerId);
    const now = new Map<string, MigError | null>();
    const outcome: ReviewOutcome = { accepted: [], refused: [], fresh: [] };
    for (const offered of record.capabilities) {
      const text = JSON.stringify(offered);
      let verdict = before?.get(text);
      const known = verdict !== undefined;
      if (!known) verdict = await this.check(providerId, offered);
      now.set(text, verdict ?? null);
      if (!verdict) {
        outcome.accepted.push(offered);
        continue;
      }
      const refusal = {
        capability: String(offered?.descriptor?.id ?? ""),
        version: String(offered?.descriptor?.version ?? ""),
        error: verdict.toJSON(),
      };
      outcome.refused.push(refusal);
      if (!known) outcome.fresh.push(refusal);
    }
    this.verdicts.set(providerId, now);
    return outcome;
  }

  /** The provider left: its verdicts go. */
  forget(providerId: string): void {
    this.verdicts.delete(providerId);
  }

  private async check(providerId: string, offered: Offered): Promise<MigError | undefined> {
    try {
      const descriptor = offered?.descriptor;
      if (descriptor === null || typeof descriptor !== "object") {
        throw new MigError("MIG_INVALID_REQUEST", "a registered capability needs its descriptor", {
          details: { field: "capabilities[].descriptor" },
        });
      }
      checkDescriptor(descriptor);
      const schemas = schemasOf(offered, descriptor.id);
      // Unchanged since the registry took it (this provider's earlier beat, reviewed by another runtime): two
      // registrations reviewed at once by two runtimes were not compared with each other, and neither is refused
      // later for the other.
      const listed = this.providers().get(providerId)?.capabilities;
      if (
        listed?.some(
          (c) => JSON.stringify({ descriptor: c.descriptor, schemas: c.schemas }) === JSON.stringify(offered),
        )
      )
        return undefined;
      const { schemas: registry } = this.runtime;
      registry.checkAll(schemas);
      checkContract(descriptor, this.registeredNow(providerId, descriptor), (uri) => schemas[uri] ?? registry.get(uri));
      await registry.publishAll(schemas);
      return undefined;
    } catch (err) {
      if (err instanceof MigError && err.code === "MIG_INVALID_REQUEST") return err;
      throw err;
    }
  }

  /**
   * The versions of the descriptor's capability registered now: hosted by this runtime, and served by live providers.
   * The provider's own registration of the same version is left out: its new record replaces it.
   */
  private registeredNow(providerId: string, descriptor: CapabilityDescriptor): CapabilityDescriptor[] {
    const id = descriptor.id;
    const version = versionKey(descriptor.version);
    const found: CapabilityDescriptor[] = [];
    for (const entry of this.runtime.capabilities.versions(id)) {
      if (!entry.route) found.push(entry.descriptor);
    }
    for (const [other, provider] of this.providers()) {
      for (const { descriptor: d } of provider.capabilities) {
        if (d?.id !== id) continue;
        if (other === providerId && versionKey(d.version) === version) continue;
        found.push(d);
      }
    }
    return found;
  }
}

function schemasOf(offered: Offered, id: string): Record<string, JsonObject> {
  const schemas = offered.schemas ?? {};
  if (schemas === null || typeof schemas !== "object" || Array.isArray(schemas)) {
    throw new MigError("MIG_INVALID_REQUEST", `capability ${id}: schemas must map schema URIs to JSON Schemas`, {
      details: { field: "capabilities[].schemas" },
    });
  }
  return schemas;
}
