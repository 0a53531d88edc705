// One audit record's shape, apart from the log (runtime/policy/audit.ts) so that the line writer
// (runtime/policy/audit-line.ts) and the log both import it and neither imports the other.
import type { MigErrorCode } from "../../schemas/errors.ts";

export type AuditDecision = "allow" | "deny" | "none";

export interface AuditRecord {
  /** RFC 3339 time of the decision. */
  ts: string;
  server_id: string;
  /** `operation`: a MIG operation; `authentication`: a refused credential; `admin`: an admin route. */
  kind: "operation" | "authentication" | "admin";
  binding: string;
  /** Who: the principal's subject (`sub`), or the X-Actor / "anonymous" name in auth mode none. */
  actor: string;
  authenticated: boolean;
  /** The tenant acted for (the credential's tenant when there is one); "" when unknown. */
  tenant: string;
  /** A different tenant the request named (a cross-tenant attempt), when there was one. */
  requested_tenant?: string;
  operation: string;
  /** The capability, topic, target message id or admin path. */
  target?: string;
  /** The authorization decision: allow, deny (MIG_UNAUTHORIZED, MIG_FORBIDDEN, MIG_RATE_LIMITED) or none (refused before it). */
  decision: AuditDecision;
  outcome: "ok" | "error";
  code?: MigErrorCode;
  reason?: string;
  message_id?: string;
  traceparent?: string;
  /** For a request made for an MCP call (bindings/mcp): the MCP method, the name it gave, its JSON-RPC id. */
  mcp_method?: string;
  mcp_name?: string;
  mcp_request_id?: string;
}
