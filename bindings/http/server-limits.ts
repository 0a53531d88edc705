// The HTTP listener's own limits: how long a client may take to send a request, how many connections it may
// hold, and MIG envelopes for what Node's HTTP parser refuses by itself (408, 431, 400).
import { maxHeaderSize, type Server, type ServerOptions, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { errorEnvelope, type Logger, type RuntimeConfig } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";

type LimitSettings = Pick<
  RuntimeConfig,
  | "httpHeadersTimeoutMs"
  | "httpRequestTimeoutMs"
  | "httpKeepAliveTimeoutMs"
  | "httpMaxRequestsPerSocket"
  | "httpMaxConnections"
>;

/** How long a refused connection is told to wait before it tries again (Retry-After). */
const RETRY_AFTER_MS = 1000;

/**
 * Timeouts of Node's HTTP server. Node applies headersTimeout and requestTimeout only while a request is being
 * received; an answer that takes long (a slow capability, an SSE stream, a WebSocket) is not cut by them.
 */
export function serverOptions(config: LimitSettings): ServerOptions {
  const requestTimeout = config.httpRequestTimeoutMs;
  // Node refuses a headers timeout longer than the request timeout: the whole request includes its headers.
  const headersTimeout = Math.min(config.httpHeadersTimeoutMs, requestTimeout);
  return {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: config.httpKeepAliveTimeoutMs,
    // Node checks the two timeouts on this interval (30 s by default, which let a slow client stay up to
    // 30 s past its timeout): a quarter of the shorter one, between 50 ms and 1 s.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
}

/** A raw HTTP/1.1 answer with a MIG error envelope, for sockets that have no ServerResponse (upgrades, parse errors). */
export function rawErrorAnswer(
  status: number,
  error: MigError,
  tenant?: string,
  headers: Record<string, string> = {},
): string {
  const body = JSON.stringify(errorEnvelope(error, undefined, tenant));
  let head = `HTTP/1.1 ${status} ${error.code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n${body}`;
}

export function tooManyConnections(max: number): MigError {
  return new MigError(
    "MIG_BACKPRESSURE",
    `this listener already has its maximum of ${max} open connections; retry shortly, or reuse a kept-alive connection`,
    {
      details: { max_connections: max, retry_after_ms: RETRY_AFTER_MS },
    },
  );
}

export interface ConnectionGuard {
  /** True for a connection accepted beyond the cap: its request is answered 503 and the connection closes. */
  refused(socket: Duplex | null | undefined): boolean;
}

/**
 * Caps open connections at httpMaxConnections. A connection beyond the cap is still accepted, so that its
 * request gets a 503 MIG_BACKPRESSURE envelope with Retry-After rather than a bare reset; past the cap plus
 * an eighth (at least 16) Node closes new connections at once, so refusals cannot exhaust file descriptors either.
 */
export function guardConnections(server: Server, config: LimitSettings, tls: boolean): ConnectionGuard {
  // Past this many requests a keep-alive connection is closed (the last answer says `connection: close`).
  server.maxRequestsPerSocket = config.httpMaxRequestsPerSocket;
  const max = config.httpMaxConnections;
  const refused = new WeakSet<object>();
  let open = 0;
  server.maxConnections = max + Math.max(16, Math.ceil(max / 8));
  // Over TLS the socket a request arrives on is the TLS socket of `secureConnection`.
  server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
    open++;
    socket.once("close", () => open--);
    if (open > max) refused.add(socket);
  });
  return { refused: (socket) => socket !== null && socket !== undefined && refused.has(socket) };
}

/**
 * Answers what Node's HTTP parser refuses before there is a request (headers too large, headers or body too
 * slow, malformed HTTP) with a MIG envelope, as Node would with a bare status line.
 */
export function answerClientErrors(server: Server, logger: Logger): void {
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    const inFlight = (socket as { _httpMessage?: ServerResponse })._httpMessage;
    // A reset needs no answer; an answer already started cannot be replaced by another.
    if (err.code === "ECONNRESET" || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    let status = 400;
    let error: MigError;
    switch (err.code) {
      case "HPE_HEADER_OVERFLOW":
        status = 431;
        error = new MigError(
          "MIG_INVALID_REQUEST",
          `the request headers are larger than ${maxHeaderSize} bytes; send fewer or smaller headers`,
          {
            details: { max_header_bytes: maxHeaderSize },
          },
        );
        break;
      case "ERR_HTTP_REQUEST_TIMEOUT":
        status = 408;
        error = new MigError(
          "MIG_TIMEOUT",
          `the request did not arrive in time: headers within ${server.headersTimeout} ms, the whole request within ${server.requestTimeout} ms`,
          {
            retryable: true,
            details: { headers_timeout_ms: server.headersTimeout, request_timeout_ms: server.requestTimeout },
          },
        );
        break;
      case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
        status = 413;
        error = new MigError(
          "MIG_INVALID_REQUEST",
          "the request's chunk extensions are too large; send the body without them",
        );
        break;
      default:
        error = new MigError(
          "MIG_INVALID_REQUEST",
          `the request is not valid HTTP/1.1 (${err.code ?? "unreadable"}); check the request line and headers`,
        );
    }
    logger.debug({ code: err.code, status }, "HTTP client error answered");
    // Ended, not destroyed at once: the answer leaves before the connection closes.
    socket.end(rawErrorAnswer(status, error), () => socket.destroy());
  });
}
