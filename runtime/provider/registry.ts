// The capability registry: which capabilities this runtime can serve, each in one or more versions side by side, and
// how to reach each one.
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject, MessageHeader, StreamMode } from "../../schemas/types.ts";
import type { VersionLabels } from "../base/metrics.ts";
import type { Span } from "../base/tracing.ts";
import type { Principal } from "../protocol/principal.ts";
import { DIRECT_HANDOFF_MS } from "../protocol/provider-protocol.ts";
import { checkContract } from "./contract-check.ts";
import { type Lifecycle, lifecycleOf } from "./lifecycle.ts";
import { type CapabilityDefinition, checkDescriptor, type StreamHandler, type UnaryHandler } from "./provider.ts";
import type { SchemaRegistry } from "./schema-registry.ts";
import { chooseVersion } from "./version-choice.ts";
import { byVersionDescending, isPrerelease, type VersionPin, versionKey } from "./versions.ts";

/** A stream request that passed every check (validation, policy): what opening or handing it off needs. */
export interface AcceptedStream {
  header: MessageHeader;
  entry: RegisteredCapability;
  principal: Principal;
  mode: StreamMode;
  payload: JsonObject;
  streamId: string;
  /** The stream's span, when tracing is on: what a worker running the stream continues from. */
  span?: Span | undefined;
}

export interface RegisteredCapability {
  descriptor: CapabilityDescriptor;
  handler: UnaryHandler;
  /** Serves server_stream and bidi_stream; absent when the provider only answers unary. */
  stream?: StreamHandler | undefined;
  /**
   * For a stream whose frames go out on bus subjects (the NATS binding): runs the whole stream in the
   * worker that serves the capability, which publishes its frames itself (runtime/fleet/stream-handoff.ts).
   * Resolves once the worker has taken it. Absent for capabilities this process hosts.
   */
  handOff?: ((stream: AcceptedStream) => Promise<void>) | undefined;
  /** Deprecation and sunset, read from the descriptor when the entry is registered; undefined for most. */
  lifecycle?: Lifecycle | undefined;
  /** The labels its calls are counted under (mig_capability_version_calls_total), made once. */
  labels?: VersionLabels | undefined;
  /** Whether its version is a prerelease (1.0.0-beta.1), which a call without a pin gets only when nothing else is. */
  prerelease?: boolean | undefined;
  /** How the fleet reaches the workers of a remote entry (runtime/fleet/fleet.ts); opaque here. */
  route?: string | undefined;
}

/** What add() compares a new version with: versions this process hosts, or every version it knows (the fleet's too). */
export interface AddOptions {
  against?: "local" | "all";
  /** Replace a version this process hosts already, when its contract is the same (a lifecycle change). */
  replace?: boolean;
}

type Versions = Map<string, RegisteredCapability>;

const NONE: readonly CapabilityDescriptor[] = [];
const NO_VERSIONS: readonly RegisteredCapability[] = [];

/**
 * Local entries are hosted in this process; remote entries are served by providers elsewhere on the bus (kept
 * current by runtime/fleet/fleet.ts). Both are keyed by id and version; a local entry wins over a remote one of
 * the same id and version.
 */
export class CapabilityRegistry {
  private readonly entries = new Map<string, Versions>();
  private readonly remote = new Map<string, Versions>();
  /** Capabilities that a worker answers on the public subjects itself, and from when (epoch ms). */
  private readonly direct = new Map<string, number>();
  /**
   * The capabilities that list each event topic, built when first asked after a change: PUBLISH and SUBSCRIBE
   * look their topic up on every call, which copied and sorted every descriptor each time.
   */
  private byEventTopic: Map<string, CapabilityDescriptor[]> | undefined;
  /** Each id's versions, local over remote, highest first: built when first asked after a change (every call asks). */
  private readonly ordered = new Map<string, readonly RegisteredCapability[]>();

  constructor(private readonly schemas: SchemaRegistry) {
    // The fleet's stored body won over one of this process's own: the capabilities built on it are refused.
    schemas.onReplaced = (uri) => this.removeUsersOf(uri);
  }

  /**
   * Hosts a capability version in this process. Refused (MIG_INVALID_REQUEST, nothing changed) for a bad descriptor,
   * a version already hosted, a schema that cannot be registered (runtime/provider/schema-registry.ts), or a contract
   * that breaks another version of its line (runtime/provider/contract-check.ts).
   */
  add(definition: CapabilityDefinition, options: AddOptions = {}): RegisteredCapability {
    const { descriptor } = definition;
    checkDescriptor(descriptor);
    const key = versionKey(descriptor.version);
    const local = this.entries.get(descriptor.id);
    if (local?.has(key) && !options.replace) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `capability ${descriptor.id} ${descriptor.version} is already registered in this runtime`,
      );
    }
    this.schemas.checkAll(definition.schemas);
    const existing = options.against === "all" ? this.versions(descriptor.id) : [...(local?.values() ?? [])];
    checkContract(
      descriptor,
      existing.map((entry) => entry.descriptor),
      (uri) => definition.schemas[uri] ?? this.schemas.get(uri),
    );
    this.schemas.registerAll(definition.schemas);
    const entry = entryOf(descriptor, definition.handler, definition.stream);
    let versions = local;
    if (!versions) this.entries.set(descriptor.id, (versions = new Map()));
    versions.set(key, entry);
    this.changed();
    return entry;
  }

  /**
   * Removes a capability this process hosts: every version of it, or one (a worker whose provider stopped offering
   * it). Invocations already running keep the entry they started with; its schemas stay registered, as URIs never
   * change content.
   */
  remove(id: string, version?: string): boolean {
    const versions = this.entries.get(id);
    if (!versions) return false;
    const removed = version === undefined ? versions.size > 0 : versions.delete(versionKey(version));
    if (version === undefined || versions.size === 0) this.entries.delete(id);
    if (removed) this.changed();
    return removed;
  }

  /** Removes the local capabilities whose descriptor names schema `uri`; returns their ids. */
  private removeUsersOf(uri: string): string[] {
    const removed: string[] = [];
    for (const [id, versions] of this.entries) {
      for (const [key, entry] of versions) {
        const { input_schema_uri, output_schema_uri } = entry.descriptor;
        if (input_schema_uri !== uri && output_schema_uri !== uri) continue;
        versions.delete(key);
        removed.push(`${id} ${entry.descriptor.version}`);
      }
      if (versions.size === 0) this.entries.delete(id);
    }
    if (removed.length > 0) this.changed();
    return removed;
  }

  /** Sets (or, with undefined, removes) the versions of a capability that live remote providers serve. */
  setRemote(id: string, versions: ReadonlyMap<string, RegisteredCapability> | undefined): void {
    if (versions && versions.size > 0) this.remote.set(id, new Map(versions));
    else this.remote.delete(id);
    this.changed();
  }

  /** The remote versions of `id`, by version key (runtime/fleet/fleet.ts keeps entries whose descriptor is unchanged). */
  remoteVersions(id: string): ReadonlyMap<string, RegisteredCapability> | undefined {
    return this.remote.get(id);
  }

  /** Makes the entry a remote provider's registration describes (its lifecycle read, its labels made). */
  static entryOf(
    descriptor: CapabilityDescriptor,
    handler: UnaryHandler,
    stream?: StreamHandler,
  ): RegisteredCapability {
    return entryOf(descriptor, handler, stream);
  }

  private changed(): void {
    this.byEventTopic = undefined;
    this.ordered.clear();
  }

  /** Records (or, with undefined, clears) the instant from which a worker serves the capability's NATS invokes itself. */
  setDirect(id: string, from: number | undefined): void {
    if (from === undefined) this.direct.delete(id);
    else this.direct.set(id, from);
  }

  /**
   * Whether a NATS invoke of `id` is a direct-lane worker's to answer (this runtime stays silent): from a little
   * before the lanes' instant (DIRECT_HANDOFF_MS), what they decline in between they hand back. A capability this
   * runtime hosts itself is always its own, and so is one registered in several versions: the lane of a worker
   * serves its own version only, and the choice among versions is a gateway's.
   */
  servedDirect(id: string, now: number): boolean {
    const from = this.direct.get(id);
    return (
      from !== undefined && now >= from - DIRECT_HANDOFF_MS && !this.entries.has(id) && this.versions(id).length === 1
    );
  }

  /** The earliest instant from which live direct-lane workers answer `id`'s NATS invokes, if any does. */
  directSince(id: string): number | undefined {
    return this.direct.get(id);
  }

  remoteIds(): string[] {
    return [...this.remote.keys()];
  }

  /** Whether this runtime hosts `id` itself, in any version (a remote provider of the same id does not count). */
  hasLocal(id: string): boolean {
    return this.entries.has(id);
  }

  /** A version of `id` this runtime hosts (the one version when `version` is not given and it hosts one). */
  local(id: string, version?: string): RegisteredCapability | undefined {
    const versions = this.entries.get(id);
    if (!versions) return undefined;
    if (version !== undefined) return versions.get(versionKey(version));
    return versions.size === 1 ? versions.values().next().value : undefined;
  }

  /** The version of `id` a call without a pin gets (runtime/provider/version-choice.ts), or undefined if none serves. */
  get(id: string): RegisteredCapability | undefined {
    const ordered = this.versions(id);
    if (ordered.length === 0) return undefined;
    try {
      return chooseVersion(ordered, undefined, Date.now());
    } catch {
      return ordered[0];
    }
  }

  /**
   * The version of `id` a call gets with `pin` (or none); undefined when no version of `id` is registered. Throws
   * MIG_UNSUPPORTED_CAPABILITY for a pin nothing satisfies and for a version past its sunset.
   */
  resolve(id: string, pin: VersionPin | undefined, now = Date.now()): RegisteredCapability | undefined {
    const ordered = this.versions(id);
    return ordered.length === 0 ? undefined : chooseVersion(ordered, pin, now);
  }

  /** Every version of `id`, local over remote for the same version, highest first. */
  versions(id: string): readonly RegisteredCapability[] {
    const known = this.ordered.get(id);
    if (known) return known;
    const local = this.entries.get(id);
    const remote = this.remote.get(id);
    if (!local && !remote) return NO_VERSIONS;
    const merged = new Map(remote);
    for (const [key, entry] of local ?? []) merged.set(key, entry);
    const ordered = [...merged.values()].sort((a, b) =>
      byVersionDescending(a.descriptor.version, b.descriptor.version),
    );
    this.ordered.set(id, ordered);
    return ordered;
  }

  /** The capabilities whose `event_topics` list `topic` (usually none). */
  withEventTopic(topic: string): readonly CapabilityDescriptor[] {
    if (this.byEventTopic === undefined) {
      this.byEventTopic = new Map();
      for (const descriptor of this.descriptors()) {
        for (const t of descriptor.event_topics ?? []) {
          let list = this.byEventTopic.get(t);
          if (!list) this.byEventTopic.set(t, (list = []));
          list.push(descriptor);
        }
      }
    }
    return this.byEventTopic.get(topic) ?? NONE;
  }

  /** Every registered version of every capability: by id, and each id's versions highest first. */
  descriptors(): CapabilityDescriptor[] {
    const ids = new Set([...this.entries.keys(), ...this.remote.keys()]);
    return [...ids]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap((id) => this.versions(id).map((entry) => entry.descriptor));
  }
}

function entryOf(
  descriptor: CapabilityDescriptor,
  handler: UnaryHandler,
  stream?: StreamHandler,
): RegisteredCapability {
  const lifecycle = lifecycleOf(descriptor);
  return {
    descriptor,
    handler,
    stream,
    lifecycle,
    prerelease: isPrerelease(descriptor.version),
    labels: {
      capability: descriptor.id,
      version: descriptor.version,
      deprecated: lifecycle === undefined ? "false" : "true",
    },
  };
}
