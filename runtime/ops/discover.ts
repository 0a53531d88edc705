// DISCOVER: the descriptors a principal may use, filtered by query, with schema refs and QoS on request.

import type { CapabilityDescriptor, DiscoverResponse } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { acceptRequest, optionalBooleanField, optionalStringField } from "./request.ts";

export function discover(core: RuntimeCore, body: unknown, request: RequestContext): DiscoverResponse {
  const { raw, header } = acceptRequest(core, body, request);
  const query = optionalStringField(raw, "query", 200)?.toLowerCase();
  const includeSchemaRefs = optionalBooleanField(raw, "include_schema_refs", true);
  const includeQos = optionalBooleanField(raw, "include_qos", true);

  const capabilities: Partial<CapabilityDescriptor>[] = [];
  for (const descriptor of core.capabilities.descriptors()) {
    if (query && !descriptor.id.toLowerCase().includes(query)) continue;
    if (!core.policy.canSee(request.principal, descriptor, header.tenant_id)) continue;
    const shown: Partial<CapabilityDescriptor> = { ...descriptor };
    if (!includeSchemaRefs) {
      delete shown.input_schema_uri;
      delete shown.output_schema_uri;
    }
    if (!includeQos) delete shown.qos;
    capabilities.push(shown);
  }
  return { header, capabilities };
}
