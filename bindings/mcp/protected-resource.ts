// OAuth 2.0 Protected Resource Metadata (RFC 9728) for /mcp in jwt mode, and the `WWW-Authenticate` challenge of a
// 401 that points MCP clients to it (the MCP authorization spec's discovery step).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import { getOAuthProtectedResourceMetadataUrl } from "@modelcontextprotocol/server";

export const MCP_PATH = "/mcp";
export const METADATA_PATH = "/.well-known/oauth-protected-resource";

export interface ProtectedResourceOptions {
  /** The public URL of /mcp (MIG_MCP_RESOURCE_URL); without it, the URL the request itself used. */
  resourceUrl?: string | undefined;
  /** Issuers whose tokens this endpoint accepts (MIG_MCP_AUTHORIZATION_SERVERS, else MIG_JWT_ISSUER). */
  authorizationServers: string[];
}

/** The resource identifier of /mcp: configured, or the scheme and Host of the request (behind no proxy). */
export function resourceUrlOf(req: IncomingMessage, options: ProtectedResourceOptions): URL {
  if (options.resourceUrl) return new URL(options.resourceUrl);
  const scheme = (req.socket as TLSSocket).encrypted ? "https" : "http";
  return new URL(MCP_PATH, `${scheme}://${req.headers.host ?? "localhost"}`);
}

/** `Bearer resource_metadata="…"`, with `error="invalid_token"` when a credential was sent and refused (RFC 6750). */
export function bearerChallenge(req: IncomingMessage, options: ProtectedResourceOptions, description?: string): string {
  const url = getOAuthProtectedResourceMetadataUrl(resourceUrlOf(req, options));
  const parts = [`resource_metadata="${url}"`];
  if (req.headers.authorization !== undefined) {
    parts.push('error="invalid_token"');
    if (description) parts.push(`error_description="${description.replace(/["\\]/g, "'").slice(0, 200)}"`);
  }
  return `Bearer ${parts.join(", ")}`;
}

/** GET of the metadata document, at the root well-known path and at the one that names /mcp (RFC 9728 §3.1). */
export function serveMetadata(req: IncomingMessage, res: ServerResponse, options: ProtectedResourceOptions): void {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "application/json" });
    res.end(JSON.stringify({ error: "invalid_request", error_description: "the metadata document is read with GET" }));
    return;
  }
  req.resume();
  const document: Record<string, unknown> = {
    resource: resourceUrlOf(req, options).href,
    bearer_methods_supported: ["header"],
    resource_name: "MIG gateway (MCP)",
  };
  if (options.authorizationServers.length > 0) document.authorization_servers = options.authorizationServers;
  const text = JSON.stringify(document);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "max-age=300",
  });
  res.end(req.method === "HEAD" ? undefined : text);
}
