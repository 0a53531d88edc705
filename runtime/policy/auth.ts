// Authentication at the binding edge: turns an Authorization value into a Principal (auth modes none and jwt).
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  errors as joseErrors,
  jwtVerify,
} from "jose";
import { MigError } from "../../schemas/errors.ts";
import type { BindingType } from "../../schemas/types.ts";
import type { AuthMode, RuntimeConfig } from "../base/config.ts";
import { anonymousPrincipal, type Principal } from "../protocol/principal.ts";

const MAX_TOKEN_BYTES = 8 * 1024;
const DEFAULT_CLOCK_SKEW_SECONDS = 30;

/** The asymmetric algorithms a JWKS may use; HS* is never accepted from a JWKS (no shared secrets there). */
const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];

export interface Credentials {
  /** The raw Authorization value, e.g. "Bearer eyJ…". */
  authorization?: string | undefined;
  /** X-Actor: a display name for unauthenticated callers. */
  actor?: string | undefined;
  /** For the audit record of a refusal: where the attempt came from and what it tried. */
  binding?: BindingType | "admin" | undefined;
  tenant?: string | undefined;
  operation?: string | undefined;
}

/** Verification keys and claim rules of jwt mode; each key source pins its own algorithms. */
export interface JwtOptions {
  hs256Secret?: string | undefined;
  /** A PEM public key (SPKI); its type decides the one algorithm it verifies. */
  publicKeyPem?: string | undefined;
  jwks?: JSONWebKeySet | undefined;
  jwksUrl?: string | undefined;
  issuer?: string[] | undefined;
  audience?: string[] | undefined;
  clockSkewSeconds?: number | undefined;
  requireExp?: boolean | undefined;
}

/** Told about every refused credential, so the audit log can record it. */
export type AuthFailureListener = (credentials: Credentials, error: MigError) => void;

interface PinnedKey {
  algorithms: string[];
  key: Uint8Array | KeyObject | JWTVerifyGetKey;
}

export class Authenticator {
  private readonly byAlgorithm = new Map<string, PinnedKey>();
  private readonly verifyOptions: JWTVerifyOptions;
  private readonly accepted: string[];
  /** Set by the runtime that owns this authenticator. */
  onFailure: AuthFailureListener | undefined;

  constructor(
    readonly mode: AuthMode,
    hs256Secret?: string,
    options: JwtOptions = {},
  ) {
    const secret = hs256Secret ?? options.hs256Secret;
    // Each source answers only for its own algorithms: a token says HS256 → only the secret is tried,
    // so an RSA public key can never be used as an HMAC secret (the HS/RS confusion attack).
    if (secret) this.pin({ algorithms: ["HS256"], key: new TextEncoder().encode(secret) });
    if (options.publicKeyPem) {
      const key = createPublicKey(options.publicKeyPem);
      this.pin({ algorithms: [algorithmOf(key)], key });
    }
    const jwksSources: JWTVerifyGetKey[] = [];
    if (options.jwks) jwksSources.push(createLocalJWKSet(options.jwks));
    if (options.jwksUrl) {
      jwksSources.push(
        createRemoteJWKSet(new URL(options.jwksUrl), {
          timeoutDuration: 5_000,
          cooldownDuration: 30_000,
          cacheMaxAge: 10 * 60_000,
        }),
      );
    }
    if (jwksSources.length > 0) {
      const jwks = firstMatchingKey(jwksSources);
      for (const alg of ASYMMETRIC_ALGORITHMS)
        if (!this.byAlgorithm.has(alg)) this.byAlgorithm.set(alg, { algorithms: [alg], key: jwks });
    }
    this.accepted = [...this.byAlgorithm.keys()];
    if (mode === "jwt" && this.accepted.length === 0) {
      throw new Error("auth mode jwt needs a key: an HS256 secret, a public key file, a JWKS file or a JWKS URL");
    }
    this.verifyOptions = { clockTolerance: options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS };
    if (options.issuer?.length) this.verifyOptions.issuer = options.issuer;
    if (options.audience?.length) this.verifyOptions.audience = options.audience;
    if (options.requireExp) this.verifyOptions.requiredClaims = ["exp"];
  }

  /** An authenticator for the runtime's settings; reads key files once, at start. */
  static fromConfig(config: RuntimeConfig): Authenticator {
    if (config.authMode === "none") return new Authenticator("none");
    const list = (value: string | undefined) =>
      value
        ?.split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    return new Authenticator("jwt", config.jwtHs256Secret, {
      publicKeyPem: config.jwtPublicKeyFile ? readFileSync(config.jwtPublicKeyFile, "utf8") : undefined,
      jwks: config.jwtJwksFile ? (JSON.parse(readFileSync(config.jwtJwksFile, "utf8")) as JSONWebKeySet) : undefined,
      jwksUrl: config.jwtJwksUrl,
      issuer: list(config.jwtIssuer),
      audience: list(config.jwtAudience),
      clockSkewSeconds: config.jwtClockSkewS,
      requireExp: config.jwtRequireExp,
    });
  }

  /** The algorithms this authenticator accepts, for the startup log and docs. */
  get algorithms(): readonly string[] {
    return this.accepted;
  }

  async authenticate(credentials: Credentials): Promise<Principal> {
    if (this.mode === "none") return anonymousPrincipal(credentials.actor);
    try {
      return await this.verify(bearerToken(credentials.authorization));
    } catch (err) {
      const error =
        err instanceof MigError ? err : new MigError("MIG_UNAUTHORIZED", "the bearer token is not a valid JWT");
      this.onFailure?.(credentials, error);
      throw error;
    }
  }

  private pin(pinned: PinnedKey): void {
    for (const alg of pinned.algorithms) this.byAlgorithm.set(alg, pinned);
  }

  private async verify(token: string): Promise<Principal> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new MigError("MIG_UNAUTHORIZED", "the bearer token is not a valid JWT");
    }
    const pinned = typeof alg === "string" ? this.byAlgorithm.get(alg) : undefined;
    if (!pinned) {
      throw new MigError(
        "MIG_UNAUTHORIZED",
        `the bearer token is signed with ${JSON.stringify(alg)}; this server accepts ${this.accepted.join(", ")}`,
      );
    }
    let claims: Record<string, unknown>;
    try {
      const options = { ...this.verifyOptions, algorithms: pinned.algorithms };
      const result =
        typeof pinned.key === "function"
          ? await jwtVerify(token, pinned.key, options)
          : await jwtVerify(token, pinned.key, options);
      claims = result.payload;
    } catch (err) {
      throw joseFailure(err);
    }
    const tenant =
      typeof claims.tenant_id === "string" ? claims.tenant_id : typeof claims.tenant === "string" ? claims.tenant : "";
    if (!tenant) throw new MigError("MIG_UNAUTHORIZED", "the bearer token has no tenant_id (or tenant) claim");
    return {
      subject: typeof claims.sub === "string" && claims.sub ? claims.sub : "unknown",
      tenant_id: tenant,
      scopes: scopesOf(claims),
      authenticated: true,
    };
  }
}

function bearerToken(authorization: string | undefined): string {
  const value = authorization?.trim();
  if (!value) throw new MigError("MIG_UNAUTHORIZED", "a bearer token is required: send `Authorization: Bearer <JWT>`");
  if (value.length > MAX_TOKEN_BYTES + 16) {
    throw new MigError("MIG_UNAUTHORIZED", `the bearer token is larger than ${MAX_TOKEN_BYTES} bytes`);
  }
  const match = /^Bearer\s+(\S+)$/i.exec(value);
  if (!match) throw new MigError("MIG_UNAUTHORIZED", "the Authorization value must be `Bearer <JWT>`");
  const token = match[1]!;
  if (token.length > MAX_TOKEN_BYTES)
    throw new MigError("MIG_UNAUTHORIZED", `the bearer token is larger than ${MAX_TOKEN_BYTES} bytes`);
  return token;
}

/** The one algorithm a PEM key verifies, from its type (and curve): RSA → RS256, P-256 → ES256, Ed25519 → EdDSA. */
function algorithmOf(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === "rsa") return "RS256";
  if (type === "ed25519" || type === "ed448") return "EdDSA";
  if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1" || curve === "P-256") return "ES256";
    if (curve === "secp384r1" || curve === "P-384") return "ES384";
    if (curve === "secp521r1" || curve === "P-521") return "ES512";
  }
  throw new Error(
    `the public key in MIG_JWT_PUBLIC_KEY_FILE has type ${type}; use an RSA, EC (P-256/384/521) or Ed25519 key`,
  );
}

/** Tries JWKS sources in order; the first that holds a key matching the token's kid and alg wins. */
function firstMatchingKey(sources: JWTVerifyGetKey[]): JWTVerifyGetKey {
  if (sources.length === 1) return sources[0]!;
  return async (header, token) => {
    let last: unknown;
    for (const source of sources) {
      try {
        return await source(header, token);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  };
}

function scopesOf(claims: Record<string, unknown>): Set<string> {
  const scopes = new Set<string>();
  if (typeof claims.scope === "string") for (const s of claims.scope.split(/\s+/)) if (s) scopes.add(s);
  if (Array.isArray(claims.scopes)) for (const s of claims.scopes) if (typeof s === "string" && s) scopes.add(s);
  return scopes;
}

function joseFailure(err: unknown): MigError {
  // The identity provider being unreachable is not the caller's fault: retryable, not a refusal.
  if (
    err instanceof joseErrors.JWKSTimeout ||
    (err instanceof Error && /fetch failed|Expected 200 OK/i.test(err.message))
  ) {
    return new MigError("MIG_UNAVAILABLE", "the JWKS endpoint that holds the token keys did not answer; try again", {
      retryable: true,
    });
  }
  return new MigError("MIG_UNAUTHORIZED", describeJoseError(err));
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return "the bearer token has expired";
  if (err instanceof joseErrors.JWTClaimValidationFailed)
    return `the bearer token's "${err.claim}" claim is not acceptable: ${err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return "the bearer token is not signed with an accepted algorithm";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return "the bearer token's signature does not verify";
  if (err instanceof joseErrors.JWKSNoMatchingKey)
    return "no key of the configured JWKS matches the bearer token's kid and alg";
  return "the bearer token is not a valid JWT";
}
