// Wire message types of MIG v0.1, with the standard's snake_case field names kept from wire to actor.
import type { MigErrorBody } from "./errors.ts";

export type JsonObject = Record<string, unknown>;

export type BindingType = "grpc" | "nats" | "http";
export type InvocationMode = "unary" | "server_stream" | "client_stream" | "bidi_stream";
export type StreamPreference = "unary" | "server_stream" | "bidi_stream";
/** The mode a stream runs in, once chosen from its request. */
export type StreamMode = "server_stream" | "bidi_stream";
export type DeliverySemantics = "best_effort" | "at_least_once" | "exactly_once";
export type FrameKind = "request" | "response" | "event" | "control" | "error";

export interface MessageHeader {
  mig_version: string;
  message_id: string;
  timestamp: string;
  tenant_id: string;
  session_id?: string;
  traceparent?: string;
  idempotency_key?: string;
  deadline_ms: number;
  meta?: JsonObject;
}

/** A header as it may arrive: every field optional until the runtime normalizes it. */
export type InboundHeader = Partial<MessageHeader>;

export interface QoSProfile {
  max_payload_bytes?: number;
  supports_replay?: boolean;
  delivery_semantics?: DeliverySemantics;
  supports_ordering?: boolean;
}

export interface CapabilityDescriptor {
  id: string;
  version: string;
  modes: InvocationMode[];
  input_schema_uri: string;
  output_schema_uri: string;
  event_topics?: string[];
  auth_scopes: string[];
  qos?: QoSProfile;
  /**
   * This runtime's extension (docs/contracts.md): a version that is deprecated (true, or a message for people) and
   * the RFC 3339 instant after which calls to it are refused.
   */
  lifecycle?: { deprecated?: boolean | string; sunset?: string };
}

export interface HelloRequest {
  header?: InboundHeader;
  supported_versions?: string[];
  requested_bindings?: string[];
  requested_features?: string[];
}

export interface HelloResponse {
  header: MessageHeader;
  selected_version: string;
  selected_binding: BindingType;
  enabled_features: string[];
  server_id: string;
}

export interface DiscoverRequest {
  header?: InboundHeader;
  query?: string;
  include_schema_refs?: boolean;
  include_qos?: boolean;
}

export interface DiscoverResponse {
  header: MessageHeader;
  capabilities: Partial<CapabilityDescriptor>[];
}

export interface InvokeRequest {
  header?: InboundHeader;
  capability?: string;
  payload?: JsonObject;
  stream_preference?: StreamPreference;
}

export interface InvokeResponse {
  header: MessageHeader;
  capability: string;
  payload: JsonObject;
  result_schema_uri?: string;
}

export interface StreamFrame {
  header: MessageHeader;
  stream_id: string;
  capability: string;
  kind: FrameKind;
  payload?: JsonObject;
  end_stream?: boolean;
  error?: MigErrorBody;
}

export interface CancelRequest {
  header?: InboundHeader;
  target_message_id?: string;
  reason?: string;
}

export type CancelStatus = "cancelled" | "not_found" | "already_completed";

export interface CancelAck {
  header: MessageHeader;
  target_message_id: string;
  accepted: boolean;
  status: CancelStatus;
}

export interface HeartbeatRequest {
  header?: InboundHeader;
  interval_ms?: number;
}

export interface HeartbeatAck {
  header: MessageHeader;
  suggested_interval_ms: number;
  load_factor: number;
}

export interface ErrorEnvelope {
  header: MessageHeader;
  error: MigErrorBody;
}

export interface PublishRequest {
  header?: InboundHeader;
  topic?: string;
  /** The event's ordering key. */
  key?: string;
  /** An explicit event id (a UUID) that dedups a repeated PUBLISH when the header has no idempotency_key. */
  event_id?: string;
  payload?: JsonObject;
}

export interface PublishAck {
  header: MessageHeader;
  topic: string;
  event_id: string;
  /** The event's position in its topic: 1, 2, 3, … with no holes. */
  sequence: number;
  accepted: boolean;
}

export interface SubscribeRequest {
  header?: InboundHeader;
  topic?: string;
  /** Durable consumer name: a subscription that comes back with it continues where it left off. */
  consumer_id?: string;
  /** Exclusive: the last sequence the subscriber already has; "0" or 0 replays from the first event. */
  resume_cursor?: string | number;
  max_inflight?: number;
}

export interface EventMessage {
  header: MessageHeader;
  topic: string;
  event_id: string;
  sequence: number;
  /** True for events that were stored before the subscription began. */
  replay: boolean;
  key?: string;
  payload: JsonObject;
  published_at: string;
}
