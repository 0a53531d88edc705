// Test helper: descriptors of throwaway capabilities that accept and return any JSON object.
import type { CapabilityDescriptor, InvocationMode } from "../../schemas/types.ts";

export const ANY_SCHEMA = "schema://test/any/v1";
export const anySchemas = { [ANY_SCHEMA]: { type: "object" } };

export function anyDescriptor(id: string, modes: InvocationMode[]): CapabilityDescriptor {
  return { id, version: "1.0.0", modes, input_schema_uri: ANY_SCHEMA, output_schema_uri: ANY_SCHEMA, auth_scopes: [] };
}
