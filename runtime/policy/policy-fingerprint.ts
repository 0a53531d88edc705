// The settings a process authenticates and authorizes requests with, as a fingerprint: gateways publish theirs, and a direct-lane worker answers only under the same one.
import { createHash, scryptSync } from "node:crypto";
import { readFileSync } from "node:fs";
import type { AuthMode, RateLimit, RuntimeConfig } from "../base/config.ts";

export interface PolicyFingerprint {
  auth_mode: AuthMode;
  /** One digest per setting, named by its environment variable, so that a mismatch can say what differs. */
  parts: Record<string, string>;
  /** One digest of all parts: equal fingerprints have equal digests. */
  digest: string;
}

const digestOf = (name: string, value: string) =>
  createHash("sha256").update(`${name}\0${value}`).digest("base64url").slice(0, 22);

/**
 * The shared secret is published only through a slow, salted hash: the fingerprint travels in the registry
 * bucket, and a fast hash of a short secret could be guessed offline by anyone who reads it.
 */
const secretDigest = (secret: string) =>
  scryptSync(secret, "mig policy fingerprint: MIG_JWT_HS256_SECRET", 24).toString("base64url");

function fileDigest(name: string, path: string | undefined): string {
  if (!path) return digestOf(name, "");
  try {
    return digestOf(name, readFileSync(path, "utf8"));
  } catch {
    // The runtime itself refused to start without it; a fingerprint only needs to differ.
    return digestOf(name, `unreadable ${path}`);
  }
}

/** A comma-separated claim list is a set: the order it was written in does not matter. */
const listOf = (value: string | undefined) =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .sort()
    .join(",");
const rateOf = (limit: RateLimit | undefined) => (limit ? `${limit.rate}/${limit.burst}` : "");

/**
 * The fingerprint of `config`: the auth mode; in auth mode jwt the keys (the HS256 secret, the content of the
 * public key and JWKS files, the JWKS URL) and the claim rules (issuer, audience, clock skew, require-exp) and
 * admin scopes; in every mode the policy file's content, the default rate limits and the cancel rule. Key
 * files are read now, as the authenticator read them at start.
 */
export function policyFingerprint(config: RuntimeConfig): PolicyFingerprint {
  const parts: Record<string, string> = {
    MIG_AUTH_MODE: digestOf("MIG_AUTH_MODE", config.authMode),
    MIG_POLICY_FILE: fileDigest("MIG_POLICY_FILE", config.policyFile),
    MIG_TENANT_RATE_LIMIT: digestOf("MIG_TENANT_RATE_LIMIT", rateOf(config.tenantRateLimit)),
    MIG_CAPABILITY_RATE_LIMIT: digestOf("MIG_CAPABILITY_RATE_LIMIT", rateOf(config.capabilityRateLimit)),
    MIG_CANCEL_SAME_SUBJECT: digestOf("MIG_CANCEL_SAME_SUBJECT", String(config.cancelSameSubject)),
  };
  // In auth mode none no token is read: key settings left over in the environment change nothing.
  if (config.authMode === "jwt") {
    Object.assign(parts, {
      MIG_JWT_HS256_SECRET: config.jwtHs256Secret
        ? secretDigest(config.jwtHs256Secret)
        : digestOf("MIG_JWT_HS256_SECRET", ""),
      MIG_JWT_PUBLIC_KEY_FILE: fileDigest("MIG_JWT_PUBLIC_KEY_FILE", config.jwtPublicKeyFile),
      MIG_JWT_JWKS_FILE: fileDigest("MIG_JWT_JWKS_FILE", config.jwtJwksFile),
      MIG_JWT_JWKS_URL: digestOf("MIG_JWT_JWKS_URL", config.jwtJwksUrl ?? ""),
      MIG_JWT_ISSUER: digestOf("MIG_JWT_ISSUER", listOf(config.jwtIssuer)),
      MIG_JWT_AUDIENCE: digestOf("MIG_JWT_AUDIENCE", listOf(config.jwtAudience)),
      MIG_JWT_CLOCK_SKEW_S: digestOf("MIG_JWT_CLOCK_SKEW_S", String(config.jwtClockSkewS)),
      MIG_JWT_REQUIRE_EXP: digestOf("MIG_JWT_REQUIRE_EXP", String(config.jwtRequireExp)),
      MIG_ADMIN_SCOPE: digestOf("MIG_ADMIN_SCOPE", config.adminScope),
      MIG_ADMIN_GLOBAL_SCOPE: digestOf("MIG_ADMIN_GLOBAL_SCOPE", config.adminGlobalScope),
    });
  }
  const sorted = Object.keys(parts)
    .sort()
    .map((name) => [name, parts[name]]);
  return {
    auth_mode: config.authMode,
    parts,
    digest: createHash("sha256").update(JSON.stringify(sorted)).digest("base64url"),
  };
}

/** The settings (environment variable names) in which two fingerprints differ. */
export function policyDifferences(mine: PolicyFingerprint, theirs: Pick<PolicyFingerprint, "parts">): string[] {
  const names = new Set([...Object.keys(mine.parts), ...Object.keys(theirs.parts)]);
  return [...names].filter((name) => mine.parts[name] !== theirs.parts[name]).sort();
}
