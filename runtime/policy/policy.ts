// Authorization rules shared by every binding: tenant agreement, capability scopes and tenant allow lists,
// rate limits, who may cancel what, and who may use the admin routes.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor } from "../../schemas/types.ts";
import { parseRateLimit, type RateLimit, type RuntimeConfig } from "../base/config.ts";
import { RateLimiter } from "../base/rate-limit.ts";
import { holdsAnyScope, type Principal } from "../protocol/principal.ts";
import type { RequestContext } from "../protocol/request-context.ts";

/**
 * The tenant the transport established: the credential's tenant, checked against any tenant the
 * transport itself names (X-Tenant-ID, a NATS subject token, gRPC metadata).
 */
export function transportTenant(principal: Principal, named: string | undefined): string | undefined {
  const claimed = named?.trim() || undefined;
  if (principal.tenant_id !== undefined) {
    if (claimed !== undefined && claimed !== principal.tenant_id) {
      throw new MigError(
        "MIG_FORBIDDEN",
        `the credential belongs to tenant "${principal.tenant_id}" and cannot act for tenant "${claimed}"`,
      );
    }
    return principal.tenant_id;
  }
  return claimed;
}

/** Scopes only; AccessPolicy.canSee also applies the capability's tenant allow list. */
export function canSee(principal: Principal, descriptor: CapabilityDescriptor): boolean {
  return holdsAnyScope(principal, descriptor.auth_scopes);
}

export function authorizeCapability(principal: Principal, descriptor: CapabilityDescriptor): void {
  if (!canSee(principal, descriptor)) {
    throw new MigError(
      "MIG_FORBIDDEN",
      `capability ${descriptor.id} needs one of the scopes ${descriptor.auth_scopes.join(", ")}`,
      {
        details: { required_scopes: descriptor.auth_scopes },
      },
    );
  }
}

/** What an admin route may show: one tenant's records, or (`tenant` undefined) every tenant's. */
export interface AdminView {
  tenant: string | undefined;
}

/**
 * The tenant an admin route shows: a tenant-scoped admin sees its own tenant whatever it asked, and naming another is
 * MIG_FORBIDDEN (`what` is the refused action, e.g. "read tenant \"globex\"'s records"); a cross-tenant admin sees
 * what it asked for (undefined: every tenant).
 */
export function adminTenant(
  view: AdminView,
  asked: string | undefined,
  what: string,
  globalScope: string,
): string | undefined {
  if (view.tenant === undefined) return asked;
  if (asked !== undefined && asked !== view.tenant) {
    throw new MigError(
      "MIG_FORBIDDEN",
      `this admin token is scoped to tenant "${view.tenant}" and cannot ${what}; that needs the scope ${globalScope}`,
    );
  }
  return view.tenant;
}

/** The policy file (`MIG_POLICY_FILE`, YAML or JSON); rate limits are "rate/burst" strings or {rate, burst}. */
export interface PolicyDocument {
  tenants?: Record<string, { rate_limit?: string | RateLimit }>;
  capabilities?: Record<string, { tenants?: string[]; rate_limit?: string | RateLimit }>;
}

interface CapabilityRule {
  tenants: ReadonlySet<string> | undefined;
  rateLimit: RateLimit | undefined;
}

/**
 * The runtime's authorization decisions beyond the free functions above. Tenant allow lists live on
 * the operator's side (the policy file), not in descriptors: a provider cannot widen its own audience.
 * Rate limits are token buckets per process: N gateway processes allow up to N times the rate.
 */
export class AccessPolicy {
  private readonly tenantLimits = new Map<string, RateLimit>();
  private readonly capabilityRules = new Map<string, CapabilityRule>();
  private readonly limiter = new RateLimiter();

  constructor(
    private readonly config: RuntimeConfig,
    document: PolicyDocument = {},
  ) {
    for (const [tenant, rule] of Object.entries(document.tenants ?? {})) {
      if (rule?.rate_limit !== undefined)
        this.tenantLimits.set(tenant, rateLimitOf(rule.rate_limit, `tenants.${tenant}.rate_limit`));
    }
    for (const [id, rule] of Object.entries(document.capabilities ?? {})) {
      if (
        rule?.tenants !== undefined &&
        (!Array.isArray(rule.tenants) || rule.tenants.some((t) => typeof t !== "string"))
      ) {
        throw new Error(`policy: capabilities.${id}.tenants must be a list of tenant ids`);
      }
      this.capabilityRules.set(id, {
        tenants: rule?.tenants ? new Set(rule.tenants) : undefined,
        rateLimit:
          rule?.rate_limit !== undefined ? rateLimitOf(rule.rate_limit, `capabilities.${id}.rate_limit`) : undefined,
      });
    }
  }

  static load(config: RuntimeConfig): AccessPolicy {
    if (!config.policyFile) return new AccessPolicy(config);
    const text = readFileSync(config.policyFile, "utf8");
    const document = (parseYaml(text) ?? {}) as PolicyDocument;
    if (typeof document !== "object" || Array.isArray(document))
      throw new Error(`policy file ${config.policyFile} must hold a mapping`);
    return new AccessPolicy(config, document);
  }

  /** DISCOVER: the principal holds a scope of the capability and its tenant is on the capability's list. */
  canSee(principal: Principal, descriptor: CapabilityDescriptor, tenant: string): boolean {
    return holdsAnyScope(principal, descriptor.auth_scopes) && this.tenantAllowed(descriptor.id, tenant);
  }

  /** INVOKE (and, as they land, stream invocations): scopes, the tenant allow list, then the rate limits. */
  authorizeInvoke(request: RequestContext, tenant: string, descriptor: CapabilityDescriptor): void {
    authorizeCapability(request.principal, descriptor);
    if (!this.tenantAllowed(descriptor.id, tenant)) {
      throw new MigError("MIG_FORBIDDEN", `capability ${descriptor.id} is not offered to tenant "${tenant}"`);
    }
    this.takeQuota(tenant, descriptor.id);
    request.authorized = true;
  }

  /** CANCEL: only the tenant that started the target (and, with MIG_CANCEL_SAME_SUBJECT, the same subject). */
  authorizeCancel(request: RequestContext, tenant: string, target: { tenant: string; subject: string }): void {
    if (target.tenant !== tenant) {
      throw new MigError(
        "MIG_FORBIDDEN",
        "the target invocation belongs to another tenant; only its own tenant may cancel it",
      );
    }
    if (
      this.config.cancelSameSubject &&
      request.principal.authenticated &&
      target.subject !== request.principal.subject
    ) {
      throw new MigError(
        "MIG_FORBIDDEN",
        "the target invocation was started by another subject; only that subject may cancel it",
      );
    }
    request.authorized = true;
  }

  /**
   * Admin routes (and /metrics unless public), open in auth mode none. In jwt mode the admin scope gives
   * a view of the admin's own tenant; the cross-tenant scope gives every tenant, and is the only way to
   * routes that cannot be cut by tenant (`everyTenant`: live actors, /metrics).
   */
  authorizeAdmin(principal: Principal, what: string, everyTenant = false): AdminView {
    if (this.config.authMode === "none") return { tenant: undefined };
    const { adminScope, adminGlobalScope } = this.config;
    const global = principal.authenticated && principal.scopes.has(adminGlobalScope);
    if (global) return { tenant: undefined };
    if (everyTenant) {
      throw new MigError("MIG_FORBIDDEN", `${what} shows every tenant and needs the scope ${adminGlobalScope}`, {
        details: { required_scopes: [adminGlobalScope] },
      });
    }
    if (!principal.authenticated || !principal.scopes.has(adminScope) || principal.tenant_id === undefined) {
      throw new MigError(
        "MIG_FORBIDDEN",
        `${what} needs the scope ${adminScope} (or ${adminGlobalScope} for every tenant)`,
        {
          details: { required_scopes: [adminScope, adminGlobalScope] },
        },
      );
    }
    return { tenant: principal.tenant_id };
  }

  /** Whether a tenant-scoped admin view shows `capability` (the tenant allow lists of the policy file). */
  adminSees(view: AdminView, capability: string): boolean {
    return view.tenant === undefined || this.tenantAllowed(capability, view.tenant);
  }

  /** Whether /metrics on the main listener asks for a token. */
  get metricsProtected(): boolean {
    return this.config.authMode === "jwt" && !this.config.metricsPublic;
  }

  private tenantAllowed(capability: string, tenant: string): boolean {
    const allowed = this.capabilityRules.get(capability)?.tenants;
    return allowed === undefined || allowed.has(tenant);
  }

  private takeQuota(tenant: string, capability: string): void {
    const tenantLimit = this.tenantLimits.get(tenant) ?? this.config.tenantRateLimit;
    const tenantKey = `t\u0000${tenant}`;
    if (tenantLimit) {
      const taken = this.limiter.take(tenantKey, tenantLimit);
      if (!taken.ok) throw rateLimited(`tenant ${tenant}`, "tenant", tenantLimit, taken.retryAfterMs);
    }
    const capabilityLimit = this.capabilityRules.get(capability)?.rateLimit ?? this.config.capabilityRateLimit;
    if (capabilityLimit) {
      const taken = this.limiter.take(`c\u0000${tenant}\u0000${capability}`, capabilityLimit);
      if (!taken.ok) {
        if (tenantLimit) this.limiter.refund(tenantKey);
        throw rateLimited(
          `capability ${capability} for tenant ${tenant}`,
          "capability",
          capabilityLimit,
          taken.retryAfterMs,
        );
      }
    }
  }
}

function rateLimited(what: string, scope: "tenant" | "capability", limit: RateLimit, retryAfterMs: number): MigError {
  return new MigError(
    "MIG_RATE_LIMITED",
    `the rate limit of ${what} (${limit.rate}/s, burst ${limit.burst}) is used up; retry in ${retryAfterMs} ms`,
    {
      retryable: true,
      details: { retry_after_ms: retryAfterMs, limit_scope: scope, rate_per_second: limit.rate, burst: limit.burst },
    },
  );
}

function rateLimitOf(value: string | RateLimit, where: string): RateLimit {
  if (typeof value === "string") return parseRateLimit(`policy ${where}`)(value);
  if (value && typeof value === "object" && value.rate > 0 && value.burst >= 1)
    return { rate: value.rate, burst: value.burst };
  throw new Error(`policy ${where} must be "rate/burst" or {rate, burst} with rate > 0 and burst >= 1`);
}

/**
 * Whether the runtime may answer a bus request on its reply subject. The runtime's credential may publish
 * anywhere, so a caller could name an internal subject as its reply-to and make the runtime publish there
 * (a confused deputy). Replies go only to inboxes: `_INBOX.…`, or the tenant's own `_INBOX_<tenant>.…`.
 */
export function replySubjectAllowed(reply: string, tenant: string): boolean {
  if (!reply.startsWith("_INBOX.") && !reply.startsWith(`_INBOX_${tenant}.`)) return false;
  // One inbox, named in full: a wildcard (`_INBOX.*`, `_INBOX.>`) would make the runtime publish to every
  // subscriber of a pattern, and an empty token or white space is no subject a caller can listen on.
  return !/[\s*>]/.test(reply) && !reply.includes("..") && !reply.endsWith(".");
}
