// The capability registry: which capabilities this runtime can serve, and how to reach each one.
import { MigError } from "./errors.ts";
import type { CapabilityDefinition, StreamHandler, UnaryHandler } from "./provider.ts";
import type { SchemaRegistry } from "./schema-registry.ts";
import type { CapabilityDescriptor } from "./types.ts";

export interface RegisteredCapability {
  descriptor: CapabilityDescriptor;
  handler: UnaryHandler;
  /** Serves server_stream and bidi_stream; absent when the provider only answers unary. */
  stream?: StreamHandler | undefined;
}

export class CapabilityRegistry {
  private readonly entries = new Map<string, RegisteredCapability>();

  constructor(private readonly schemas: SchemaRegistry) {}

  add(definition: CapabilityDefinition): void {
    const { descriptor } = definition;
    if (this.entries.has(descriptor.id)) {
      throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id} is already registered in this runtime`);
    }
    for (const [uri, schema] of Object.entries(definition.schemas)) this.schemas.register(uri, schema);
    this.entries.set(descriptor.id, { descriptor, handler: definition.handler, stream: definition.stream });
  }

  get(id: string): RegisteredCapability | undefined {
    return this.entries.get(id);
  }

  descriptors(): CapabilityDescriptor[] {
    return [...this.entries.values()].map((e) => e.descriptor).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
