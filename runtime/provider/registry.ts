// The capability registry: which capabilities this runtime can serve, and how to reach each one.
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject, MessageHeader, StreamMode } from "../../schemas/types.ts";
import type { Principal } from "../protocol/principal.ts";
import type { CapabilityDefinition, StreamHandler, UnaryHandler } from "./provider.ts";
import type { SchemaRegistry } from "./schema-registry.ts";

/** A stream request that passed every check (validation, policy): what opening or handing it off needs. */
export interface AcceptedStream {
  header: MessageHeader;
  entry: RegisteredCapability;
  principal: Principal;
  mode: StreamMode;
  payload: JsonObject;
  streamId: string;
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
}

const NONE: readonly CapabilityDescriptor[] = [];

/**
 * Local entries are hosted in this process; remote entries are served by providers elsewhere on the
 * bus (kept current by runtime/fleet/fleet.ts). A local entry wins over a remote one of the same id.
 */
export class CapabilityRegistry {
  private readonly entries = new Map<string, RegisteredCapability>();
  private readonly remote = new Map<string, RegisteredCapability>();
  /** Capabilities that a worker answers on the public subjects itself, and from when (epoch ms). */
  private readonly direct = new Map<string, number>();
  /**
   * The capabilities that list each event topic, built when first asked after a change: PUBLISH and SUBSCRIBE
   * look their topic up on every call, which copied and sorted every descriptor each time.
   */
  private byEventTopic: Map<string, CapabilityDescriptor[]> | undefined;

  constructor(private readonly schemas: SchemaRegistry) {}

  add(definition: CapabilityDefinition): void {
    const { descriptor } = definition;
    if (this.entries.has(descriptor.id)) {
      throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id} is already registered in this runtime`);
    }
    for (const [uri, schema] of Object.entries(definition.schemas)) this.schemas.register(uri, schema);
    this.entries.set(descriptor.id, { descriptor, handler: definition.handler, stream: definition.stream });
    this.byEventTopic = undefined;
  }

  /**
   * Removes a capability this process hosts (a worker whose provider stopped offering it). Invocations already
   * running keep the entry they started with; its schemas stay registered, as URIs never change content.
   */
  remove(id: string): boolean {
    const removed = this.entries.delete(id);
    if (removed) this.byEventTopic = undefined;
    return removed;
  }

  /** Sets (or, with undefined, removes) the entry of a capability that live remote providers serve. */
  setRemote(id: string, entry: RegisteredCapability | undefined): void {
    if (entry) this.remote.set(id, entry);
    else this.remote.delete(id);
    this.byEventTopic = undefined;
  }

  /** Records (or, with undefined, clears) the instant from which a worker serves the capability's NATS invokes itself. */
  setDirect(id: string, from: number | undefined): void {
    if (from === undefined) this.direct.delete(id);
    else this.direct.set(id, from);
  }

  /**
   * Whether a NATS invoke of `id` is a direct-lane worker's to answer (this runtime stays silent). A
   * capability this runtime hosts itself is always its own.
   */
  servedDirect(id: string, now: number): boolean {
    const from = this.direct.get(id);
    return from !== undefined && now >= from && !this.entries.has(id);
  }

  /** The earliest instant from which live direct-lane workers answer `id`'s NATS invokes, if any does. */
  directSince(id: string): number | undefined {
    return this.direct.get(id);
  }

  remoteIds(): string[] {
    return [...this.remote.keys()];
  }

  /** Whether this runtime hosts `id` itself (a remote provider of the same id does not count). */
  hasLocal(id: string): boolean {
    return this.entries.has(id);
  }

  get(id: string): RegisteredCapability | undefined {
    return this.entries.get(id) ?? this.remote.get(id);
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

  descriptors(): CapabilityDescriptor[] {
    const all = [...this.entries.values()].map((e) => e.descriptor);
    for (const [id, entry] of this.remote) if (!this.entries.has(id)) all.push(entry.descriptor);
    return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
