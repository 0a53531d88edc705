// The runtime's conformance check of itself (GET /admin/v0.1/health/conformance): the harness's Core profile run against
// this process's own endpoints, as a tenant of its own, with tokens the runtime signs for itself in auth mode jwt.
import { SignJWT } from "jose";
import type { SelfCheck } from "../bindings/http/self-check.ts";
import { FIXTURE, INFER } from "../conformance/checks/fixtures.ts";
import type { ConformanceOptions } from "../conformance/types.ts";
import type { MigRuntime } from "../runtime/runtime.ts";

/** The tenant the self-check runs as: its requests, audit records and rate-limit buckets are apart from any caller's. */
export const SELF_CHECK_TENANT = "mig-self-check";
/** The `sub` of the tokens the runtime signs for the self-check (the audit log's `actor`). */
export const SELF_CHECK_SUBJECT = "mig-self-check";
/** Long enough for a Core run whose every check takes its whole bound (35 checks × 4 × 5 s is under 12 minutes). */
const TOKEN_LIFETIME_S = 15 * 60;

/** This process's endpoints as its bindings report them; `nats`: whether the NATS binding serves the runtime's bus. */
export interface SelfCheckEndpoints {
  http: string;
  grpc?: string | undefined;
  nats?: boolean | undefined;
}

/** A wildcard listen address is not one to connect to: the self-check connects over loopback. */
function loopback(hostPort: string): string {
  return hostPort.replace(/^0\.0\.0\.0(?=:)/, "127.0.0.1").replace(/^\[::\](?=:)/, "[::1]");
}

function loopbackUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${loopback(parsed.host)}`;
}

const list = (value: string | undefined) =>
  (value ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);

/**
 * The token pair the harness needs in auth mode jwt, signed with the runtime's HS256 secret: one holding the scopes of
 * the capabilities the Core checks call (the demo capability and the fixtures), and one without the scoped fixture's
 * scope (scoped DISCOVER). No admin scope: the Core profile reads no admin route. Undefined when the runtime has no
 * key it can sign with (only a public key, a JWKS).
 */
async function selfTokens(runtime: MigRuntime): Promise<{ token: string; limitedToken: string } | undefined> {
  const secret = runtime.config.jwtHs256Secret;
  if (!secret) return undefined;
  const scopesOf = (id: string) => runtime.capabilities.get(id)?.descriptor.auth_scopes ?? [];
  const needed = new Set([INFER, ...Object.values(FIXTURE)].flatMap(scopesOf));
  const scopedOnly = new Set(scopesOf(FIXTURE.scoped));
  const sign = (scopes: string[]) => {
    let jwt = new SignJWT({ tenant_id: SELF_CHECK_TENANT, scope: scopes.join(" ") })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(SELF_CHECK_SUBJECT)
      .setIssuedAt()
      .setExpirationTime(`${TOKEN_LIFETIME_S}s`);
    const [issuer] = list(runtime.config.jwtIssuer);
    const [audience] = list(runtime.config.jwtAudience);
    if (issuer) jwt = jwt.setIssuer(issuer);
    if (audience) jwt = jwt.setAudience(audience);
    return jwt.sign(new TextEncoder().encode(secret));
  };
  return {
    token: await sign([...needed]),
    limitedToken: await sign([...needed].filter((scope) => !scopedOnly.has(scope))),
  };
}

/**
 * The bus URL the harness connects to, with the runtime's own bus user when the bus has users; undefined (its NATS
 * checks skip) when the runtime reaches its bus with a credentials file or TLS settings the harness cannot take.
 */
function natsUrl(runtime: MigRuntime): string | undefined {
  const { user, password, credsFile, tlsCa, tlsCert } = runtime.busCredentials;
  if (credsFile || tlsCa || tlsCert) return undefined;
  const url = new URL(runtime.natsUrl);
  if (user) {
    url.username = user;
    url.password = password ?? "";
  }
  return url.toString();
}

/** The runner the HTTP binding calls (HttpBinding.setAdminHooks): one Core run against `endpoints`. */
export function conformanceSelfCheck(runtime: MigRuntime, endpoints: SelfCheckEndpoints): SelfCheck {
  return async () => {
    const jwt = runtime.config.authMode === "jwt";
    const tokens = jwt ? await selfTokens(runtime) : undefined;
    if (jwt && !tokens) {
      return {
        ran: false,
        reason:
          "auth mode jwt without MIG_JWT_HS256_SECRET: the runtime holds no key to sign a token for itself, and every check would be refused; run `mig conformance` against it with a token of your identity provider",
      };
    }
    const options: ConformanceOptions = {
      http: loopbackUrl(endpoints.http),
      tenant: SELF_CHECK_TENANT,
      profile: "core",
      ...tokens,
    };
    if (endpoints.grpc) options.grpc = loopback(endpoints.grpc);
    if (endpoints.nats) options.nats = natsUrl(runtime);
    // Loaded on the first run: a gateway that is never asked does not load the harness.
    const { runConformance } = await import("../conformance/harness.ts");
    const report = await runConformance(options);
    const bindings = ["http", ...(options.grpc ? ["grpc"] : []), ...(options.nats ? ["nats"] : [])];
    return { ran: true, report, auth: tokens ? "minted_token" : "none", bindings };
  };
}
