// The admin API's registrations (POST /admin/v0.1/capabilities and /admin/v0.1/schemas, the standard's admin
// OpenAPI): a capability descriptor hosted by this runtime and served by workers over the bus, and a schema body
// stored for the whole fleet. The same checks as a worker's registration (docs/contracts.md).

import { validateEnvelope } from "../../schemas/envelopes.ts";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import type { CapabilityRegistry } from "../provider/registry.ts";
import type { SchemaRegistry } from "../provider/schema-registry.ts";
import type { Fleet } from "./fleet.ts";
import type { FleetHost } from "./fleet-host.ts";
import { remoteStreamHandler } from "./remote-stream.ts";
import { streamHandOff } from "./stream-handoff.ts";

/** What the admin registrations use of the runtime. */
export interface AdminRegistrar extends FleetHost {
  capabilities: CapabilityRegistry;
  schemas: SchemaRegistry;
  fleet: Fleet | undefined;
}

/**
 * Registers `{descriptor}` in this runtime: its work goes to the workers of the capability over the bus (the plain
 * subjects, where any provider of it takes work). A version this runtime already hosts is replaced when its contract
 * is the same (a lifecycle change: deprecation, sunset). Refused with MIG_INVALID_REQUEST naming the field for a
 * malformed descriptor, and for a contract that breaks another registered version.
 */
export function registerCapability(runtime: AdminRegistrar, body: unknown): CapabilityDescriptor {
  const request = objectBody(body, ["descriptor"]);
  const descriptor = request.descriptor;
  const shape = validateEnvelope("CapabilityDescriptor", descriptor);
  if (!shape.ok) {
    const problem = shape.errors[0]!.replace(/^CapabilityDescriptor/, "descriptor");
    throw new MigError("MIG_INVALID_REQUEST", `${problem} (the standard's CapabilityDescriptor)`, {
      details: { field: problem.split(" ")[0]!.replace(/\//g, "."), errors: shape.errors },
    });
  }
  const described = descriptor as CapabilityDescriptor;
  const dispatcher = runtime.fleet?.dispatcher;
  const handler = dispatcher
    ? dispatcher.handlerFor(described)
    : () => {
        throw new MigError("MIG_UNAVAILABLE", `capability ${described.id} has no worker reachable from this runtime`);
      };
  const entry = runtime.capabilities.add(
    { descriptor: described, handler, schemas: {}, stream: remoteStreamHandler(runtime, described) },
    { against: "all", replace: true },
  );
  entry.handOff = streamHandOff(runtime, described);
  return described;
}

/** Registers `{uri, schema}` for the fleet: stored once, never changed (runtime/provider/schema-store.ts). */
export async function registerSchema(runtime: AdminRegistrar, body: unknown): Promise<{ uri: string }> {
  const request = objectBody(body, ["uri", "schema"]);
  const { uri, schema } = request;
  if (typeof uri !== "string") {
    throw new MigError("MIG_INVALID_REQUEST", "uri must be a string: the schema's URI, e.g. schema://team/name/v1", {
      details: { field: "uri" },
    });
  }
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    throw new MigError("MIG_INVALID_REQUEST", "schema must be a JSON object: a JSON Schema 2020-12", {
      details: { field: "schema" },
    });
  }
  await runtime.schemas.publishAll({ [uri]: schema as JsonObject });
  return { uri };
}

/** The body as an object with exactly the fields `required` (the standard's admin requests carry no others). */
function objectBody(body: unknown, required: string[]): Record<string, unknown> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new MigError("MIG_INVALID_REQUEST", `the body must be a JSON object with ${required.join(" and ")}`);
  }
  const fields = body as Record<string, unknown>;
  for (const field of required) {
    if (fields[field] === undefined)
      throw new MigError("MIG_INVALID_REQUEST", `${field} is required`, { details: { field } });
  }
  for (const field of Object.keys(fields)) {
    if (!required.includes(field))
      throw new MigError("MIG_INVALID_REQUEST", `unknown field ${field}; the body holds ${required.join(" and ")}`, {
        details: { field },
      });
  }
  return fields;
}
