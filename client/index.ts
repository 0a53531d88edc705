// The MIG client library: `connect(url)` picks the transport from the URL's scheme and returns one API for all of them.
import { MigError } from "../schemas/errors.ts";
import { type ClientOptions, MigClient } from "./client.ts";
import type { NatsOptions } from "./nats.ts";
import type { Transport } from "./transport.ts";

export type * from "../schemas/types.ts";
export type {
  CallOptions,
  ClientOptions,
  DiscoverOptions,
  IdempotentCallOptions,
  PublishOptions,
  StreamOptions,
  SubscribeOptions,
  TokenSource,
} from "./client.ts";
export { MigClient } from "./client.ts";
export type { NatsOptions } from "./nats.ts";
export type { RetryOptions } from "./retry.ts";
export { MigStream } from "./stream.ts";
export { MigSubscription } from "./subscription.ts";
export { MigError };

export interface ConnectOptions extends ClientOptions {
  /** Connection settings for `nats://` URLs (bus user, password, inbox prefix). */
  nats?: NatsOptions;
}

/**
 * Connects to a MIG endpoint: `http://` or `https://` (JSON routes, WebSocket streams, SSE subscriptions), `nats://`
 * (the NATS binding's subjects) or `grpc://` (the mig.v0_1 services, plaintext). Rejects with a MigError when the
 * URL is not one of these or, for NATS, when the server cannot be reached.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<MigClient> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MigError("MIG_INVALID_REQUEST", `"${url}" is not a URL: give one like http://127.0.0.1:8080`, {
      retryable: false,
    });
  }
  // Each transport is loaded when a URL asks for it: an HTTP caller never loads grpc-js or the NATS client.
  let transport: Transport;
  switch (parsed.protocol) {
    case "http:":
    case "https:":
      transport = (await import("./http.ts")).httpTransport(parsed);
      break;
    case "nats:":
    case "tls:":
      transport = await (await import("./nats.ts")).natsTransport(parsed, options.nats ?? {});
      break;
    case "grpc:":
      transport = (await import("./grpc.ts")).grpcTransport(parsed);
      break;
    default:
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `the client speaks http://, https://, nats:// and grpc://, not ${parsed.protocol}//`,
        { retryable: false },
      );
  }
  return new MigClient(transport, options);
}
