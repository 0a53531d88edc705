// Authentication at the binding edge: turns an Authorization value into a Principal (auth modes none and jwt).
import { jwtVerify, errors as joseErrors } from "jose";
import { MigError } from "./errors.ts";
import { anonymousPrincipal, type Principal } from "./principal.ts";
import type { AuthMode } from "./config.ts";

const MAX_TOKEN_BYTES = 8 * 1024;
const CLOCK_SKEW_SECONDS = 30;

export interface Credentials {
  /** The raw Authorization value, e.g. "Bearer eyJ…". */
  authorization?: string | undefined;
  /** X-Actor: a display name for unauthenticated callers. */
  actor?: string | undefined;
}

export class Authenticator {
  private readonly key: Uint8Array | undefined;

  constructor(readonly mode: AuthMode, hs256Secret?: string) {
    this.key = hs256Secret ? new TextEncoder().encode(hs256Secret) : undefined;
  }

  async authenticate(credentials: Credentials): Promise<Principal> {
    if (this.mode === "none") return anonymousPrincipal(credentials.actor);
    const authorization = credentials.authorization?.trim();
    if (!authorization) {
      throw new MigError("MIG_UNAUTHORIZED", "a bearer token is required: send `Authorization: Bearer <JWT>`");
    }
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw new MigError("MIG_UNAUTHORIZED", "the Authorization value must be `Bearer <JWT>`");
    const token = match[1]!;
    if (token.length > MAX_TOKEN_BYTES) {
      throw new MigError("MIG_UNAUTHORIZED", `the bearer token is larger than ${MAX_TOKEN_BYTES} bytes`);
    }
    return this.verify(token);
  }

  private async verify(token: string): Promise<Principal> {
    let claims: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, this.key!, { algorithms: ["HS256"], clockTolerance: CLOCK_SKEW_SECONDS });
      claims = result.payload;
    } catch (err) {
      throw new MigError("MIG_UNAUTHORIZED", describeJoseError(err));
    }
    const tenant = typeof claims.tenant_id === "string" ? claims.tenant_id : typeof claims.tenant === "string" ? claims.tenant : "";
    if (!tenant) throw new MigError("MIG_UNAUTHORIZED", "the bearer token has no tenant_id (or tenant) claim");
    return {
      subject: typeof claims.sub === "string" && claims.sub ? claims.sub : "unknown",
      tenant_id: tenant,
      scopes: scopesOf(claims),
      authenticated: true,
    };
  }
}

function scopesOf(claims: Record<string, unknown>): Set<string> {
  const scopes = new Set<string>();
  if (typeof claims.scope === "string") for (const s of claims.scope.split(/\s+/)) if (s) scopes.add(s);
  if (Array.isArray(claims.scopes)) for (const s of claims.scopes) if (typeof s === "string" && s) scopes.add(s);
  return scopes;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "the bearer token has expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `the bearer token's "${err.claim}" claim is not acceptable: ${err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "the bearer token is not signed with an accepted algorithm (HS256)";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "the bearer token's signature does not verify";
  return "the bearer token is not a valid JWT";
}
