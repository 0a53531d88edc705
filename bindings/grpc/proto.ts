// Loads schemas/mig.proto once with proto-loader and gives the four services with request decoders that never throw.
import { join } from "node:path";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { loadSync, type Options, type PackageDefinition } from "@grpc/proto-loader";
import { MigError, publicCause } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import { requestFromProto } from "./translate.ts";

export const PROTO_FILE = join(import.meta.dirname, "../../schemas/mig.proto");

/**
 * The standard's snake_case names kept as they are (STYLE: one shape from wire to actor), enum
 * values as their names, uint64 as JS numbers, unset scalars as their defaults and the set member
 * of a oneof named in a virtual field (google.protobuf.Value's `kind`).
 */
export const LOADER_OPTIONS: Options = { keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true };

export const SERVICE_NAMES = ["Discovery", "Invocation", "Events", "Control"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** A request whose bytes are not a valid message of the method's type; the handler answers it with MIG_INVALID_REQUEST. */
export class UndecodableRequest {
  constructor(
    readonly typeName: string,
    readonly reason: string,
  ) {}
}

let loaded: PackageDefinition | undefined;

export function migPackageDefinition(): PackageDefinition {
  loaded ??= loadSync(PROTO_FILE, LOADER_OPTIONS);
  return loaded;
}

/**
 * The service definition of `mig.v0_1.<name>`, with each request decoder wrapped so that bytes that
 * do not decode become an UndecodableRequest for the handler (grpc-js alone would answer INTERNAL).
 */
export function migService(name: ServiceName): ServiceDefinition {
  const original = migPackageDefinition()[`mig.v0_1.${name}`] as unknown as ServiceDefinition;
  const service: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [method, definition] of Object.entries(original)) {
    const decode = definition.requestDeserialize;
    const typeName =
      (definition as { requestType?: { type?: { name?: string } } }).requestType?.type?.name ?? "request";
    service[method] = {
      ...definition,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new UndecodableRequest(`mig.v0_1.${typeName}`, publicCause(err));
        }
      },
    };
  }
  return service as ServiceDefinition;
}

/**
 * The MIG body of a decoded request or frame: MIG_INVALID_REQUEST for one that did not decode (`what` names it
 * in the message, e.g. "the request" or "a frame"), and for one nested deeper than `maxDepth`.
 */
export function decodedBody(message: unknown, maxDepth: number, what = "the request"): JsonObject {
  if (message instanceof UndecodableRequest) {
    throw new MigError("MIG_INVALID_REQUEST", `${what} is not a valid ${message.typeName} message: ${message.reason}`);
  }
  return requestFromProto(message as Record<string, unknown>, maxDepth);
}
