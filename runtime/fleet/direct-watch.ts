// Gateway side of the direct lane: remembers which slow invocations each direct-lane worker holds, and
// answers their callers with MIG_UNAVAILABLE when that worker leaves the fleet.
import { type Msg, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { MigError } from "../../schemas/errors.ts";
import { ERROR_CODE_HEADER } from "../../schemas/nats-headers.ts";
import type { Logger } from "../base/logger.ts";
import { replySubjectAllowed } from "../policy/policy.ts";
import { errorEnvelope } from "../protocol/envelope.ts";
import type { HeldNotice } from "../protocol/provider-protocol.ts";

interface Held {
  tenant: string;
  messageId: string | undefined;
}

/** Bound on the invocations remembered per worker: a misbehaving provider cannot grow a gateway without end. */
const MAX_HELD_PER_PROVIDER = 100_000;

export class DirectWatch {
  private readonly held = new Map<string, Map<string, Held>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
  ) {}

  /** A notice on `_MIG.provider.held.<provider_id>`. */
  onNotice(msg: Msg): void {
    const providerId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    let notice: HeldNotice;
    try {
      notice = msg.json<HeldNotice>();
    } catch {
      return;
    }
    if (!notice || typeof notice.reply !== "string") return;
    let calls = this.held.get(providerId);
    if (notice.released) {
      calls?.delete(notice.reply);
      if (calls?.size === 0) this.held.delete(providerId);
      return;
    }
    const tenant = typeof notice.tenant_id === "string" ? notice.tenant_id : "";
    // The gateway will publish there on the worker's behalf: only into a caller's inbox, as the binding would.
    if (!replySubjectAllowed(notice.reply, tenant)) return;
    if (!calls) this.held.set(providerId, (calls = new Map()));
    if (calls.size >= MAX_HELD_PER_PROVIDER) return;
    calls.set(notice.reply, {
      tenant,
      messageId: typeof notice.message_id === "string" ? notice.message_id : undefined,
    });
  }

  /** The worker left the registry (or stopped heartbeating): its held callers get an answer now, not at their deadline. */
  providerGone(providerId: string): void {
    const calls = this.held.get(providerId);
    if (!calls) return;
    this.held.delete(providerId);
    for (const [reply, call] of calls) {
      const error = new MigError(
        "MIG_UNAVAILABLE",
        `the worker ${providerId} stopped while running this invocation; retry it`,
        {
          retryable: true,
          details: { provider_id: providerId },
        },
      );
      const envelope = errorEnvelope(
        error,
        { header: { message_id: call.messageId, tenant_id: call.tenant } },
        call.tenant,
      );
      const headers = natsHeaders();
      headers.set(ERROR_CODE_HEADER, error.code);
      headers.set("message_id", envelope.header.message_id);
      if (envelope.header.tenant_id) headers.set("tenant_id", envelope.header.tenant_id);
      this.nc.publish(reply, JSON.stringify(envelope), { headers });
    }
    this.logger.info(
      { provider_id: providerId, answered: calls.size },
      "answered the callers a gone direct-lane worker held",
    );
  }
}
