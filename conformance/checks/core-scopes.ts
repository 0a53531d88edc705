// Core profile, DISCOVER with auth-scoped visibility: two tokens of one tenant, the second lacking a scope some capability needs.

import { brief, ensure, isRecord, skip } from "../assert.ts";
import { check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import { BASE, FIXTURE } from "./fixtures.ts";

interface Descriptor {
  id: string;
  scopes: string[];
}

/** The scopes a JWT carries, read (not verified) from its `scope` (space-separated) or `scopes` (array) claim. */
export function tokenScopes(token: string): Set<string> | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (!isRecord(claims)) return undefined;
  const scopes = new Set<string>();
  if (typeof claims.scope === "string") for (const s of claims.scope.split(/\s+/)) if (s) scopes.add(s);
  if (Array.isArray(claims.scopes)) for (const s of claims.scopes) if (typeof s === "string") scopes.add(s);
  return scopes;
}

async function discoverAs(ctx: CheckContext, token: string, which: string): Promise<Descriptor[]> {
  const answer = await ctx.post(`${BASE}/discover`, { header: ctx.header() }, { token });
  const body = ctx.expectSuccess(answer, "DiscoverResponse");
  ensure(Array.isArray(body.capabilities), `DISCOVER with ${which} answered capabilities ${brief(body.capabilities)}`);
  return body.capabilities.filter(isRecord).map((d) => ({
    id: String(d.id),
    scopes: Array.isArray(d.auth_scopes) ? d.auth_scopes.map(String) : [],
  }));
}

export const discoverScoped = check(
  "CORE-2",
  "http",
  "discover-scoped",
  "core",
  `DISCOVER with --limited-token hides each capability --token sees whose auth_scopes it holds none of, and shows the rest (fixture: ${FIXTURE.scoped})`,
  async (ctx) => {
    if (!ctx.token || !ctx.limitedToken) {
      skip(
        "needs --token and --limited-token: two tokens of the tenant, the second without a scope that a capability needs",
      );
    }
    const limitedScopes = tokenScopes(ctx.limitedToken);
    if (!limitedScopes) skip("--limited-token is not a JWT whose claims can be read, so its scopes are unknown");
    const full = await discoverAs(ctx, ctx.token, "--token");
    const limited = new Set((await discoverAs(ctx, ctx.limitedToken, "--limited-token")).map((d) => d.id));
    const needsMissingScope = (d: Descriptor) => d.scopes.length > 0 && !d.scopes.some((s) => limitedScopes.has(s));
    const hidden = full.filter(needsMissingScope);
    const held = [...limitedScopes].join(" ") || "none";
    if (hidden.length === 0) {
      skip(
        `no capability that DISCOVER shows to --token needs a scope --limited-token lacks (it holds ${held}); ` +
          `serve ${FIXTURE.scoped} or give a limited token without one of ${brief([...new Set(full.flatMap((d) => d.scopes))])}`,
      );
    }
    const leaked = hidden.filter((d) => limited.has(d.id));
    ensure(
      leaked.length === 0,
      `DISCOVER with --limited-token (scopes: ${held}) lists ${leaked.map((d) => `${d.id} (needs ${d.scopes.join(" or ")})`).join(", ")}`,
    );
    const withheld = full.filter((d) => !needsMissingScope(d) && !limited.has(d.id));
    ensure(
      withheld.length === 0,
      `DISCOVER with --limited-token hides ${withheld.map((d) => d.id).join(", ")}, which its scopes (${held}) allow`,
    );
    return `hidden from --limited-token: ${hidden.map((d) => d.id).join(", ")}; ${full.length - hidden.length} shown to both`;
  },
);
