// Authorization rules shared by every binding: tenant agreement and capability scopes.
import { MigError } from "./errors.ts";
import { holdsAnyScope, type Principal } from "./principal.ts";
import type { CapabilityDescriptor } from "./types.ts";

/**
 * The tenant the transport established: the credential's tenant, checked against any tenant the
 * transport itself names (X-Tenant-ID, a NATS subject token, gRPC metadata).
 */
export function transportTenant(principal: Principal, named: string | undefined): string | undefined {
  const claimed = named?.trim() || undefined;
  if (principal.tenant_id !== undefined) {
    if (claimed !== undefined && claimed !== principal.tenant_id) {
      throw new MigError("MIG_FORBIDDEN", `the credential belongs to tenant "${principal.tenant_id}" and cannot act for tenant "${claimed}"`);
    }
    return principal.tenant_id;
  }
  return claimed;
}

export function canSee(principal: Principal, descriptor: CapabilityDescriptor): boolean {
  return holdsAnyScope(principal, descriptor.auth_scopes);
}

export function authorizeCapability(principal: Principal, descriptor: CapabilityDescriptor): void {
  if (!canSee(principal, descriptor)) {
    throw new MigError("MIG_FORBIDDEN", `capability ${descriptor.id} needs one of the scopes ${descriptor.auth_scopes.join(", ")}`, {
      details: { required_scopes: descriptor.auth_scopes },
    });
  }
}
