// Who may steer a subscription or a stream once it is open: its control messages (ack, close, credit, cancel, bidi frames) come from the principal that opened it.
//
// The subjects of those messages are named in answers (a subscription's id, a stream's inbound subject), so
// anyone who can publish on the bus can reach them. In auth mode jwt each control message carries a bearer
// token like any request, and it must be the opener's: the same tenant, and the same subject. Acks and credits
// are on the hot path, so the opener's token is not verified again for each of them: a control message whose
// Authorization value is the very one that opened the subscription or stream (a string comparison) is the
// opener's. Only a different value (a refreshed token) is verified, and then remembered. In auth mode none the
// opener is anonymous and nothing is checked, as for every other operation in that mode.
import { createHash } from "node:crypto";
import { MigError } from "../../schemas/errors.ts";
import type { Metrics } from "../base/metrics.ts";
import type { Principal } from "../protocol/principal.ts";
import type { AuditLog } from "./audit.ts";
import { operationRecord } from "./audit.ts";
import type { Authenticator } from "./auth.ts";

/** What a guard uses of the runtime: where a refusal is counted and audited. */
export interface GuardHost {
  metrics: Metrics;
  audit: AuditLog | undefined;
  serverId: string;
}

/** The Authorization value each principal was authenticated from, for what it opens (and hands to a worker). */
const credentials = new WeakMap<Principal, string>();

/** Keeps the Authorization value `principal` came from, so the subscription or stream it opens knows its token. */
export function rememberCredential(principal: Principal, authorization: string | undefined): void {
  if (principal.authenticated && authorization) credentials.set(principal, authorization.trim());
}

/**
 * A digest of the opener's token, for a worker that runs a stream a gateway checked: enough to recognise the
 * token on the stream's control messages, without handing the caller's credential to a provider.
 */
export function credentialDigest(principal: Principal): string | undefined {
  const value = credentials.get(principal);
  return value === undefined ? undefined : digestOf(value);
}

const digestOf = (authorization: string) => createHash("sha256").update(authorization).digest("base64url");

export interface ControlGuardOptions {
  /** The principal that opened the subscription or stream. */
  opener: Principal;
  /** Its Authorization value, when this process authenticated it. */
  authorization?: string | undefined;
  /** The digest of that value, when another process did (a stream handed to a worker). */
  digest?: string | undefined;
  /**
   * Verifies a token other than the opener's. Undefined when this process may not: a worker whose auth
   * settings are not the gateways' accepts only the opener's own token.
   */
  authenticator: () => Authenticator | undefined;
  /** For messages and the audit record: "subscription" or "stream", and its id. */
  what: string;
  target: string;
}

export class ControlGuard {
  /** The last Authorization value known to be the opener's (its own, or a refreshed token that verified). */
  private accepted: string | undefined;

  constructor(
    private readonly runtime: GuardHost,
    private readonly options: ControlGuardOptions,
  ) {
    this.accepted = options.authorization ?? credentials.get(options.opener);
  }

  /** Whether anything is checked: only what an authenticated principal opened. */
  get checks(): boolean {
    return this.options.opener.authenticated;
  }

  /**
   * `true` when the control message may act now (the opener's own token, or auth mode none); otherwise a
   * promise that resolves when a different token verified as the opener's, or rejects with the MigError to
   * answer. `operation` names the control message for the audit record (e.g. "subscription.close").
   */
  admit(authorization: string | undefined, operation: string, tenant: string): true | Promise<void> {
    if (!this.checks) return true;
    const value = authorization?.trim();
    if (value && value === this.accepted) return true;
    if (value && this.options.digest !== undefined && digestOf(value) === this.options.digest) {
      this.accepted = value;
      return true;
    }
    return this.verify(value, operation, tenant);
  }

  private async verify(value: string | undefined, operation: string, tenant: string): Promise<void> {
    const { opener, what } = this.options;
    const authenticator = this.options.authenticator();
    const unauthorized = (message: string) =>
      this.refused(undefined, operation, tenant, new MigError("MIG_UNAUTHORIZED", message));
    if (!value) {
      throw unauthorized(
        `control messages of this ${what} need the bearer token that opened it: send \`Authorization: Bearer <JWT>\``,
      );
    }
    if (authenticator?.mode !== "jwt") {
      throw unauthorized(`this ${what} takes control messages only with the bearer token that opened it`);
    }
    // A refused token is audited by the authenticator itself.
    const principal = await authenticator.authenticate({ authorization: value, binding: "nats", tenant, operation });
    if (principal.tenant_id !== opener.tenant_id) {
      throw this.refused(
        principal,
        operation,
        tenant,
        new MigError(
          "MIG_FORBIDDEN",
          `this ${what} belongs to another tenant; only the principal that opened it may act on it`,
        ),
      );
    }
    if (principal.subject !== opener.subject) {
      throw this.refused(
        principal,
        operation,
        tenant,
        new MigError("MIG_FORBIDDEN", `this ${what} was opened by another subject; only that subject may act on it`),
      );
    }
    this.accepted = value;
  }

  private refused(principal: Principal | undefined, operation: string, tenant: string, error: MigError): MigError {
    const { runtime } = this;
    runtime.metrics.errors.inc({ code: error.code, operation });
    const who = principal ?? { subject: "unauthenticated", tenant_id: undefined, authenticated: false };
    runtime.audit?.record(
      operationRecord(
        runtime.serverId,
        operation,
        undefined,
        { principal: who, tenant, binding: "nats" },
        this.options.target,
        error,
      ),
    );
    return error;
  }
}
