// A thin NATS request/reply client for the MIG NATS binding (JSON bodies, MIG header fields mirrored).

import { connect, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { fail } from "./assert.ts";

export interface NatsAnswer {
  subject: string;
  text: string;
  /** The parsed JSON reply, or undefined when it is not JSON. */
  body: unknown;
}

export class NatsClient {
  private constructor(
    private readonly connection: NatsConnection,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {}

  static async connect(url: string, token: string | undefined, timeoutMs: number): Promise<NatsClient> {
    try {
      const connection = await connect({ servers: url, timeout: timeoutMs, name: "mig-conformance" });
      return new NatsClient(connection, token, timeoutMs);
    } catch (err) {
      fail(`connect ${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Sends `body` as JSON on `subject`, mirroring header fields into NATS headers, and parses the reply. */
  async request(subject: string, body: Record<string, unknown>): Promise<NatsAnswer> {
    const hdrs = natsHeaders();
    const header = body.header;
    if (typeof header === "object" && header !== null) {
      for (const key of ["mig_version", "message_id", "tenant_id", "session_id", "traceparent", "idempotency_key"]) {
        const value = (header as Record<string, unknown>)[key];
        if (typeof value === "string" && value !== "") hdrs.set(key, value);
      }
    }
    if (this.token) hdrs.set("authorization", `Bearer ${this.token}`);
    let text: string;
    try {
      const reply = await this.connection.request(subject, JSON.stringify(body), {
        timeout: this.timeoutMs,
        headers: hdrs,
      });
      text = reply.string();
    } catch (err) {
      const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      fail(`request on ${subject}: ${reason}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { subject, text, body: parsed };
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}
