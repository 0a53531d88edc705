// Test helper: NATS clients for the public binding — a JSON request helper and a raw-protocol publisher.
import { connect as netConnect } from "node:net";
import { connect, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";

export interface NatsAnswer {
  body: any;
  headers: Record<string, string>;
}

export async function natsClient(url: string): Promise<NatsConnection> {
  return connect({ servers: url, name: "mig-test-client" });
}

/** Sends a request with a JSON (or raw string) body and returns the parsed reply and its headers. */
export async function natsRequest(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  headerValues: Record<string, string> = {},
  timeout = 10_000,
): Promise<NatsAnswer> {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headerValues)) h.set(k, v);
  const data = typeof body === "string" ? body : JSON.stringify(body);
  const msg = await nc.request(subject, data, { timeout, headers: h });
  const headers: Record<string, string> = {};
  if (msg.headers) for (const [k, v] of msg.headers) headers[k] = v[0]!;
  return { body: msg.json(), headers };
}

/**
 * Publishes with the raw client protocol, bypassing the client library's subject checks (it refuses
 * wildcards and empty tokens before they reach the server), and returns the JSON reply.
 */
export function rawRequest(
  url: string,
  subject: string,
  payload: string,
  timeoutMs = 10_000,
  replyTo = "_INBOX.raw.1",
): Promise<{ status: number | undefined; body: any }> {
  const { hostname, port } = new URL(url.replace(/^nats:/, "http:"));
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(port), hostname);
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no raw reply on ${subject}: ${buffer.toString()}`));
    }, timeoutMs);
    let sent = false;
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const text = buffer.toString("latin1");
      if (!sent && text.includes("INFO ")) {
        sent = true;
        const bytes = Buffer.byteLength(payload);
        socket.write(
          `CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n` +
            `SUB ${replyTo} 1\r\nPUB ${subject} ${replyTo} ${bytes}\r\n${payload}\r\nPING\r\n`,
        );
      }
      const match = /(H?MSG) \S+ \d+ (?:(\d+) )?(\d+)\r\n/.exec(text);
      if (!match) return;
      const start = match.index + match[0].length;
      const total = Number(match[3]);
      if (buffer.length < start + total) return;
      const headerBytes = match[1] === "HMSG" ? Number(match[2]) : 0;
      const body = buffer.subarray(start + headerBytes, start + total).toString("utf8");
      const status = /^NATS\/1\.0 (\d{3})/.exec(buffer.subarray(start, start + headerBytes).toString("latin1"));
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: status ? Number(status[1]) : undefined, body: body ? JSON.parse(body) : undefined });
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * A client with the runtime's own bus credential (full access): for tests of the gateway's own checks on a bus that
 * refuses anonymous clients (jwt mode generates the embedded bus's users).
 */
export async function runtimeBusClient(runtime: {
  natsUrl: string;
  busCredentials: { user?: string | undefined; password?: string | undefined };
}): Promise<NatsConnection> {
  const { user, password } = runtime.busCredentials;
  return connect({
    servers: runtime.natsUrl,
    name: "mig-test-client",
    ...(user ? { user, pass: password ?? "" } : {}),
  });
}
