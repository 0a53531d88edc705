// A thin NATS client for the MIG NATS binding: JSON request/reply with MIG header fields mirrored, and subscriptions.

import {
  connect,
  createInbox,
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from "@nats-io/transport-node";
import { MIRRORED_HEADER_FIELDS } from "../schemas/nats-headers.ts";
import { fail } from "./assert.ts";
import { Collector } from "./collector.ts";

export interface NatsAnswer {
  subject: string;
  text: string;
  /** The parsed JSON reply, or undefined when it is not JSON. */
  body: unknown;
}

/** One message received on a subscription. */
export interface NatsMessage {
  subject: string;
  text: string;
  /** The parsed JSON body, or undefined when it is empty or not JSON. */
  body: unknown;
  headers: Record<string, string>;
  /** Answers the message's reply subject (an ack), with the configured token; a no-op without a reply subject. */
  respond(): void;
}

/** A live NATS subscription: its messages and a way to end it. */
export interface NatsSubscription {
  subject: string;
  readonly messages: Collector<NatsMessage>;
  close(): void;
}

export class NatsClient {
  private constructor(
    private readonly connection: NatsConnection,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {}

  /** Connects to `url`; user and password in the URL (nats://user:pass@host:port) are the connection's credentials. */
  static async connect(url: string, token: string | undefined, timeoutMs: number): Promise<NatsClient> {
    const parsed = new URL(url);
    const user = decodeURIComponent(parsed.username);
    const pass = decodeURIComponent(parsed.password);
    parsed.username = "";
    parsed.password = "";
    try {
      const connection = await connect({
        servers: parsed.toString(),
        timeout: timeoutMs,
        name: "mig-conformance",
        ...(user ? { user, pass } : {}),
      });
      return new NatsClient(connection, token, timeoutMs);
    } catch (err) {
      fail(`connect ${parsed.host}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** A fresh inbox subject, where this connection may receive. */
  inbox(): string {
    return createInbox();
  }

  /** Sends `body` as JSON on `subject`, mirroring header fields into NATS headers, and parses the reply. */
  async request(subject: string, body: Record<string, unknown>): Promise<NatsAnswer> {
    let text: string;
    try {
      const reply = await this.connection.request(subject, JSON.stringify(body), {
        timeout: this.timeoutMs,
        headers: this.headersFor(body),
      });
      text = reply.string();
    } catch (err) {
      const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      fail(`request on ${subject}: ${reason}`);
    }
    return { subject, text, body: parseJson(text) };
  }

  /** Publishes `body` as JSON on `subject` without waiting for an answer. */
  publish(subject: string, body: Record<string, unknown>): void {
    this.connection.publish(subject, JSON.stringify(body), { headers: this.headersFor(body) });
  }

  /** Subscribes to `subject`; the subscription is registered at the server once `flush()` resolves. */
  subscribe(subject: string): NatsSubscription {
    const messages = new Collector<NatsMessage>();
    let sub: Subscription;
    try {
      sub = this.connection.subscribe(subject, {
        callback: (err, msg) => {
          if (err) messages.end(err);
          else messages.push(this.message(msg));
        },
      });
    } catch (err) {
      fail(`subscribe ${subject}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return {
      subject,
      messages,
      close: () => {
        sub.unsubscribe();
        messages.end();
      },
    };
  }

  /** Resolves once the server has processed everything sent so far (subscriptions included). */
  async flush(): Promise<void> {
    await this.connection.flush();
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  private headersFor(body: Record<string, unknown>) {
    const hdrs = natsHeaders();
    const header = body.header;
    if (typeof header === "object" && header !== null) {
      for (const key of MIRRORED_HEADER_FIELDS) {
        const value = (header as Record<string, unknown>)[key];
        if (typeof value === "string" && value !== "") hdrs.set(key, value);
      }
    }
    if (this.token) hdrs.set("authorization", `Bearer ${this.token}`);
    return hdrs;
  }

  private message(msg: Msg): NatsMessage {
    const text = msg.data.length > 0 ? msg.string() : "";
    const headers: Record<string, string> = {};
    if (msg.headers) for (const [key, values] of msg.headers) headers[key.toLowerCase()] = values[0] ?? "";
    return {
      subject: msg.subject,
      text,
      body: parseJson(text),
      headers,
      respond: () => {
        if (!msg.reply) return;
        const hdrs = natsHeaders();
        if (this.token) hdrs.set("authorization", `Bearer ${this.token}`);
        msg.respond(undefined, { headers: hdrs });
      },
    };
  }
}

function parseJson(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
