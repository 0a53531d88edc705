// The runtime as the bindings see it: the only module of runtime/ a binding imports. What is not exported here
// is the runtime's own business; a binding that needs more adds it here, where the surface can be read whole.

export type { RuntimeConfig } from "./base/config.ts";
export { parseAddr } from "./base/config.ts";
export type { Logger } from "./base/logger.ts";
export { ADMISSION_CHUNK, ChunkedAdmission, PUBLISH_ADMISSION_CHUNK } from "./bus/chunked-admission.ts";
export { HeaderBlock } from "./bus/nats-header-block.ts";
export { TurnBatch } from "./bus/turn-batch.ts";
export { registerCapability, registerSchema } from "./fleet/admin-registration.ts";
export type { FrameSink, StreamSession } from "./flow/stream-session.ts";
export { checkStreamId, encodeFrame, encodeFrameBytes } from "./flow/stream-session.ts";
export type { EventSink, Subscription, SubscriptionInfo } from "./ops/subscribe.ts";
export type { Authenticator, Credentials } from "./policy/auth.ts";
export { ControlGuard, rememberCredential } from "./policy/control-guard.ts";
export type { AdminView } from "./policy/policy.ts";
export { adminTenant, replySubjectAllowed } from "./policy/policy.ts";
export { CallerGone } from "./protocol/caller-gone.ts";
export { errorEnvelope, errorHeader } from "./protocol/envelope.ts";
export { parseJsonLimited, tooDeep, valueDepth } from "./protocol/json-limits.ts";
export { checkDottedName, checkTenant } from "./protocol/names.ts";
export type { Principal } from "./protocol/principal.ts";
export { DECLINED_SUBJECT, type DeclinedNotice } from "./protocol/provider-protocol.ts";
export type { GoneSignal, McpMapping, RequestContext } from "./protocol/request-context.ts";
export type { ParsedSubject } from "./protocol/subjects.ts";
export {
  capabilityOf,
  PUBLIC_SUBJECTS,
  parseSubject,
  QUEUE_GROUP,
  STREAM_START_SUBJECT,
  streamInboundSubject,
  streamSubject,
} from "./protocol/subjects.ts";
export { DEPRECATION_META_KEY } from "./provider/lifecycle.ts";
export type { CapabilityDefinition, InvocationContext, StreamContext } from "./provider/provider.ts";
export { defineCapability } from "./provider/provider.ts";
export type { MigRuntime } from "./runtime.ts";
export { ORIGIN_HEADER, ORIGIN_RUNTIME } from "./store/events.ts";
