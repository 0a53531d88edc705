// The principal: who is calling, for which tenant, with which scopes; the same shape on every binding.

export interface Principal {
  /** `sub` of the token, or the X-Actor name (or "anonymous") when unauthenticated. */
  subject: string;
  /** Tenant the credential belongs to; undefined for anonymous callers, who name a tenant per request. */
  tenant_id: string | undefined;
  scopes: ReadonlySet<string>;
  authenticated: boolean;
}

const NO_SCOPES: ReadonlySet<string> = new Set();

export function anonymousPrincipal(actor?: string): Principal {
  return { subject: actor || "anonymous", tenant_id: undefined, scopes: NO_SCOPES, authenticated: false };
}

/**
 * True when the principal may use something guarded by `required` scopes: anonymous callers in auth
 * mode `none` may use everything, as in the standard's reference; an authenticated caller needs at
 * least one of the listed scopes (none listed means open to every tenant member).
 */
export function holdsAnyScope(principal: Principal, required: readonly string[] | undefined): boolean {
  if (!principal.authenticated || !required || required.length === 0) return true;
  for (const scope of required) if (principal.scopes.has(scope)) return true;
  return false;
}
