// What a transport does for the client: one wire exchange per call, errors as MigErrors; retries, auth refresh,
// deadlines and resumption are the client's (client.ts), so each transport stays a translator.
import type {
  CancelAck,
  CancelRequest,
  DiscoverRequest,
  DiscoverResponse,
  EventMessage,
  HeartbeatAck,
  HeartbeatRequest,
  HelloRequest,
  HelloResponse,
  InvokeRequest,
  InvokeResponse,
  JsonObject,
  MessageHeader,
  PublishAck,
  PublishRequest,
  StreamFrame,
  StreamMode,
  SubscribeRequest,
} from "../schemas/types.ts";

export type TransportKind = "http" | "nats" | "grpc";

/** What every exchange carries besides its body. */
export interface CallContext {
  /** The tenant the call is made for (the body's `header.tenant_id` is the same). */
  tenant: string;
  /** A bearer token, sent as `Authorization: Bearer <token>`, when the client has one. */
  token?: string | undefined;
  /** Fires on the caller's abort or the client's deadline; the transport stops waiting and rejects. */
  signal: AbortSignal;
}

/** A request body as the client built it: every header field set that the client knows. */
export type Outbound<T> = T & { header: Partial<MessageHeader> & { tenant_id: string; message_id: string } };

export interface StreamOpen {
  capability: string;
  stream_id: string;
  mode: StreamMode;
  request: Outbound<InvokeRequest>;
}

/**
 * One open stream on the wire. The transport reads from the server only as fast as `next()` is called, plus a
 * bounded buffer of its own, so a consumer that reads slowly holds its provider back (credit, TCP or HTTP/2 windows).
 */
export interface StreamChannel {
  /** The next frame, the terminal one (`end_stream: true`) included; after it the channel is done. */
  next(): Promise<StreamFrame>;
  /** A bidi message, or the end of the caller's half when `end` is true. */
  send(payload: JsonObject | undefined, end: boolean): void;
  /** Asks the server to cancel; the terminal control frame still arrives through `next()`. */
  cancel(reason: string): void;
  /** Releases the wire (socket, subscription, call) without waiting for anything. */
  close(): void;
}

export interface SubscribeOpen {
  topic: string;
  request: Outbound<SubscribeRequest>;
}

/** What the server said when it opened a subscription. */
export interface SubscriptionInfo {
  subscription_id: string;
  /** The first sequence the subscription delivers. */
  start_sequence: number;
  consumer_id?: string | undefined;
}

/**
 * One open subscription on the wire. Events are acknowledged (where the transport has acks) when the consumer asks
 * for the next one, so `max_inflight` counts what the consumer has not finished with.
 */
export interface SubscriptionChannel {
  readonly info: SubscriptionInfo;
  /** The next event; rejects with a MigError when the subscription ends (the server's error, or the wire dropped). */
  next(): Promise<EventMessage>;
  /** Ends the subscription on the server (where the transport can say so) and releases the wire. */
  close(): Promise<void>;
}

export interface Transport {
  readonly kind: TransportKind;
  /** The address the transport talks to, for error sentences. */
  readonly url: string;
  hello(body: Outbound<HelloRequest>, call: CallContext): Promise<HelloResponse>;
  discover(body: Outbound<DiscoverRequest>, call: CallContext): Promise<DiscoverResponse>;
  invoke(capability: string, body: Outbound<InvokeRequest>, call: CallContext): Promise<InvokeResponse>;
  cancel(targetMessageId: string, body: Outbound<CancelRequest>, call: CallContext): Promise<CancelAck>;
  publish(topic: string, body: Outbound<PublishRequest>, call: CallContext): Promise<PublishAck>;
  heartbeat(body: Outbound<HeartbeatRequest>, call: CallContext): Promise<HeartbeatAck>;
  /** Opens a stream: resolves once the server accepted it (or rejects with its refusal). */
  openStream(open: StreamOpen, call: CallContext): Promise<StreamChannel>;
  /** Opens a subscription: resolves once the server accepted it (or rejects with its refusal). */
  openSubscription(open: SubscribeOpen, call: CallContext): Promise<SubscriptionChannel>;
  close(): Promise<void>;
}
