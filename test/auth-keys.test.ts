// Auth mode jwt with public keys over real HTTP: RS256 from a PEM file, ES256 from a JWKS file, EdDSA from a
// JWKS URL; issuer, audience, expiry, not-before and skew; algorithm confusion, alg none, oversized tokens.

import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const ISSUER = "https://id.example.test";
const AUDIENCE = "mig-runtime";
const INVOKE = "/mig/v0.1/invoke/observatory.models.infer";
const CALL = { payload: { input: "x" } };

let t: TestRuntime;
let jwksServer: Server;
let pem: string;
const keys = {} as Record<"rsa" | "rsaOther" | "ec" | "ed", { privateKey: CryptoKey; publicKey: CryptoKey }>;
const GOOD = { sub: "alice", tenant_id: "acme", scope: "capability:infer" };

async function sign(
  alg: string,
  key: CryptoKey | Uint8Array,
  claims: JWTPayload = GOOD,
  options: { kid?: string; iss?: string; aud?: string; exp?: number | string; nbf?: number | string } = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg, ...(options.kid ? { kid: options.kid } : {}) })
    .setIssuedAt()
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(options.aud ?? AUDIENCE)
    .setExpirationTime(options.exp ?? "5 minutes");
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(key);
}

const call = (jwt: string) => t.post(INVOKE, CALL, { authorization: `Bearer ${jwt}` });

beforeAll(async () => {
  keys.rsa = await generateKeyPair("RS256", { extractable: true });
  keys.rsaOther = await generateKeyPair("RS256", { extractable: true });
  keys.ec = await generateKeyPair("ES256", { extractable: true });
  keys.ed = await generateKeyPair("EdDSA", { extractable: true });
  const dir = mkdtempSync(join(tmpdir(), "mig-keys-"));
  pem = await exportSPKI(keys.rsa.publicKey);
  writeFileSync(join(dir, "rsa.pem"), pem);
  writeFileSync(
    join(dir, "jwks.json"),
    JSON.stringify({ keys: [{ ...(await exportJWK(keys.ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" }] }),
  );
  const remote = JSON.stringify({
    keys: [{ ...(await exportJWK(keys.ed.publicKey)), kid: "ed-1", alg: "EdDSA", use: "sig" }],
  });
  jwksServer = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(remote));
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  t = await startTestRuntime({
    config: {
      authMode: "jwt",
      jwtPublicKeyFile: join(dir, "rsa.pem"),
      jwtJwksFile: join(dir, "jwks.json"),
      jwtJwksUrl: jwksUrl,
      jwtIssuer: ISSUER,
      jwtAudience: `other-service,${AUDIENCE}`,
      jwtClockSkewS: 30,
    },
  });
});
afterAll(async () => {
  await t?.stop();
  jwksServer?.close();
});

describe("public keys", () => {
  it("RS256 from the PEM file, ES256 from the JWKS file and EdDSA from the JWKS URL each authenticate", async () => {
    for (const jwt of [
      await sign("RS256", keys.rsa.privateKey),
      await sign("ES256", keys.ec.privateKey, GOOD, { kid: "ec-1" }),
      await sign("EdDSA", keys.ed.privateKey, GOOD, { kid: "ed-1" }),
    ]) {
      const res = await call(jwt);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.header.tenant_id).toBe("acme");
    }
  });

  it("a token expired or not yet valid by less than the clock skew still authenticates", async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await call(await sign("RS256", keys.rsa.privateKey, GOOD, { exp: now - 10 }))).status).toBe(200);
    expect((await call(await sign("RS256", keys.rsa.privateKey, GOOD, { nbf: now + 10 }))).status).toBe(200);
  });
});

describe("refused tokens → 401 MIG_UNAUTHORIZED", () => {
  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Promise<string>][] = [
    ["expired beyond the skew", () => sign("RS256", keys.rsa.privateKey, GOOD, { exp: now() - 120 })],
    ["not yet valid beyond the skew", () => sign("RS256", keys.rsa.privateKey, GOOD, { nbf: now() + 120 })],
    ["signed by another RSA key", () => sign("RS256", keys.rsaOther.privateKey)],
    ["from another issuer", () => sign("RS256", keys.rsa.privateKey, GOOD, { iss: "https://evil.example.test" })],
    ["for another audience", () => sign("RS256", keys.rsa.privateKey, GOOD, { aud: "someone-else" })],
    [
      "HS256 signed with the RSA public key as the secret (algorithm confusion)",
      () => sign("HS256", new TextEncoder().encode(pem)),
    ],
    ["ES256 with a kid the JWKS does not hold", () => sign("ES256", keys.ec.privateKey, GOOD, { kid: "unknown" })],
    [
      "EdDSA signed by the right algorithm but an unknown key",
      async () => sign("EdDSA", (await generateKeyPair("EdDSA")).privateKey, GOOD, { kid: "ed-1" }),
    ],
    ["without a tenant claim", () => sign("RS256", keys.rsa.privateKey, { sub: "alice", scope: "capability:infer" })],
    [
      "alg none",
      async () => {
        const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
        return `${part({ alg: "none", typ: "JWT" })}.${part({ ...GOOD, iss: ISSUER, aud: AUDIENCE, exp: now() + 300 })}.`;
      },
    ],
    [
      "RS256 header on an alg-none-style empty signature",
      async () => (await sign("RS256", keys.rsa.privateKey)).replace(/\.[^.]+$/, "."),
    ],
    [
      "oversized (9 KiB of claims)",
      () => sign("RS256", keys.rsa.privateKey, { ...GOOD, padding: "x".repeat(9 * 1024) }),
    ],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      expectError(await call(await make()), 401, "MIG_UNAUTHORIZED");
    });
  }
});
