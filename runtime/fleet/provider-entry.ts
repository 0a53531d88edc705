// A provider as the fleet's registry knows it: a worker or a NATS micro service, its capabilities, and when it was
// last heard of.
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { UnaryHandler } from "../provider/provider.ts";

export interface RemoteCapability {
  descriptor: CapabilityDescriptor;
  schemas?: Record<string, JsonObject> | undefined;
  /** Set for providers that are not MIG workers (micro services); workers are reached through the dispatcher. */
  handler?: UnaryHandler;
}

export interface ProviderEntry {
  provider_id: string;
  kind: "worker" | "micro";
  capabilities: RemoteCapability[];
  /** When the provider was last heard of (epoch ms) and how long silence may last before it is gone. */
  lastSeen: number;
  ttlMs: number;
  /** JSON of its capabilities (and direct lane), to tell a heartbeat from a change. */
  fingerprint: string;
  /** From when (epoch ms) this worker answers public invoke subjects of its best_effort capabilities itself. */
  directFrom?: number | undefined;
  /** The registration's count (Registration.seq): an older one than the last seen is ignored. */
  seq?: number | undefined;
  /** Whether it takes each version's work on that version's subjects (Registration.versioned_subjects). */
  versionedSubjects?: boolean | undefined;
}
