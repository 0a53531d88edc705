// The provider protocol on the bus: internal subject names, the registration record and the msgpack work encoding.
import { createHash } from "node:crypto";
import { Packr } from "msgpackr";
import { MigError, type MigErrorBody } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject, MessageHeader } from "../../schemas/types.ts";
import type { Principal } from "./principal.ts";

/** Every internal subject starts here; client users get no publish permission on `_MIG.>`. */
export const INTERNAL_PREFIX = "_MIG";
export const PROTOCOL_VERSION = 1;

/** KV bucket of provider registrations, one key per provider process. */
export const REGISTRY_BUCKET = "mig_registry";
/** Entries of dead providers are garbage-collected by the bucket after this long. */
export const REGISTRY_TTL_MS = 10 * 60 * 1000;
/** A provider re-puts its registration this often; three missed beats and it is gone. */
export const DEFAULT_HEARTBEAT_MS = 2_000;
export const MISSED_BEATS = 3;

/** JetStream work queue of at_least_once and exactly_once invocations. */
export const WORK_STREAM = "MIG_WORK";
/** A worker that neither acks nor signals progress for this long is presumed dead: the work is redelivered. */
export const WORK_ACK_WAIT_MS = 3_000;
export const WORK_MAX_DELIVER = 5;
/** Queue group of core (best_effort) work subjects. */
export const WORK_QUEUE = "mig-workers";
/** A core worker still busy after this long tells the gateway who holds the work. */
export const ACCEPT_NOTICE_MS = 100;

export const workSubject = (capability: string) => `${INTERNAL_PREFIX}.work.${capability}`;
export const jsWorkSubject = (capability: string) => `${INTERNAL_PREFIX}.jswork.${capability}`;
/**
 * The subject token of one version of a capability, `@1_2_0`: what follows the prefix names the version its work is
 * for, so that workers of other versions of the same capability never take it. `@` is in no capability id, so these
 * subjects cannot be another capability's; build metadata is left out (semver gives it no precedence).
 */
export const versionToken = (version: string) => `@${version.replace(/\+.*$/, "").replace(/\./g, "_")}`;
export const versionedWorkSubject = (capability: string, version: string) =>
  `${INTERNAL_PREFIX}.work.${versionToken(version)}.${capability}`;
export const versionedJsWorkSubject = (capability: string, version: string) =>
  `${INTERNAL_PREFIX}.jswork.${versionToken(version)}.${capability}`;
export const WORK_STREAM_SUBJECTS = `${INTERNAL_PREFIX}.jswork.>`;
export const cancelSubject = (messageId: string) => `${INTERNAL_PREFIX}.cancel.${messageId}`;
export const CANCEL_WILDCARD = `${INTERNAL_PREFIX}.cancel.*`;
/** CANCEL fan-out between runtimes: whoever holds the invocation answers. */
export const FLEET_CANCEL_SUBJECT = `${INTERNAL_PREFIX}.fleet.cancel`;
/** Replies travel provider → runtime, so they live under the providers' prefix `_MIG.provider.`. */
export const replyPrefix = (runtimeToken: string) => `${INTERNAL_PREFIX}.provider.reply.${runtimeToken}`;
/** A provider announces (and renews) its registration here; a runtime writes it into the registry bucket. */
export const registerSubject = (providerId: string) => `${INTERNAL_PREFIX}.provider.register.${providerId}`;
export const leaveSubject = (providerId: string) => `${INTERNAL_PREFIX}.provider.leave.${providerId}`;
export const REGISTER_WILDCARD = `${INTERNAL_PREFIX}.provider.register.*`;
export const LEAVE_WILDCARD = `${INTERNAL_PREFIX}.provider.leave.*`;
/** Queue group of the runtimes that relay registrations into the bucket: one write per announcement. */
export const REGISTRAR_QUEUE = "mig-registrar";
/**
 * Queue group of the workers that answer public invoke subjects of their best_effort capabilities
 * themselves (the direct lane, docs/bindings/provider-protocol.md section 9).
 */
export const DIRECT_QUEUE = "mig-direct";
/** How far ahead of its registration a worker schedules the switch to its direct lane, so every gateway knows first. */
export const DIRECT_SWITCH_MS = 1_000;
/**
 * Gateways leave a capability's invokes to the direct lanes this long before the registration's instant, and the
 * workers answer from the instant itself: a request in between, which neither side answers, is handed back to the
 * gateways by the worker that received it (DECLINED_SUBJECT). Their views of the clock and of the registry may
 * then differ by this much without a request answered twice.
 */
export const DIRECT_HANDOFF_MS = 500;
/**
 * A direct-lane worker hands back here a request it received and will not answer (before its lane's instant, or
 * while it leaves): `{reply}` (JSON). The gateway that received the same request and left it to the workers answers it.
 */
export const DECLINED_SUBJECT = `${INTERNAL_PREFIX}.direct.declined`;
/** A direct-lane worker still busy after ACCEPT_NOTICE_MS says so here; gateways answer for it if it dies. */
export const heldSubject = (providerId: string) => `${INTERNAL_PREFIX}.provider.held.${providerId}`;
export const HELD_WILDCARD = `${INTERNAL_PREFIX}.provider.held.*`;
export const MAX_REGISTRATION_BYTES = 1024 * 1024;
/**
 * Registry keys of the gateways' policy fingerprints, `policy.<instance id>`: a provider id has no dot, so a
 * provider's registration (written by the registrar under its id) can never overwrite one.
 */
export const GATEWAY_POLICY_PREFIX = "policy.";

/** Durable consumer of one version of a capability on the work stream (versioned subjects, see versionToken). */
export function versionedConsumerName(capability: string, version: string): string {
  return consumerName(`${capability}${versionToken(version)}`);
}

/** Durable consumer of one capability on the work stream: readable, and unique even when ids differ only in dots. */
export function consumerName(capability: string): string {
  const readable = capability.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 60);
  const digest = createHash("sha256").update(capability).digest("hex").slice(0, 10);
  return `work_${readable}_${digest}`;
}

export function usesWorkQueue(descriptor: CapabilityDescriptor): boolean {
  const semantics = descriptor.qos?.delivery_semantics ?? "best_effort";
  return semantics === "at_least_once" || semantics === "exactly_once";
}

/** The registration record a provider keeps in the registry bucket (JSON). */
export interface Registration {
  v: number;
  provider_id: string;
  heartbeat_ms: number;
  started_at: string;
  capabilities: { descriptor: CapabilityDescriptor; schemas?: Record<string, JsonObject> }[];
  /**
   * Set only by MIG runtimes (`mig worker`): from this instant (epoch ms) the provider answers the public
   * `mig.v0_1.*.invoke.<id>` subjects of its best_effort unary capabilities itself, and gateways leave them to it.
   */
  direct_from?: number;
  /**
   * Counts the registrations of one provider instance. Registrations race on their way into the registry (any
   * runtime of the fleet writes them), so a record older than one already seen is ignored: a stale record without
   * `direct_from` must not undo a newer one, or gateways and the worker would disagree on who answers. Optional.
   */
  seq?: number;
  /**
   * Set by providers that also take each capability's work and stream opens on the subjects of its version
   * (`_MIG.work.@<version>.<capability>`, `_MIG.jswork.@<version>.<capability>`, `_MIG.stream.@<version>.<capability>`):
   * gateways then send them each version's work there, so several versions of a capability can be served side by
   * side. Optional: without it, work goes to the plain subjects.
   */
  versioned_subjects?: boolean;
}

/**
 * The registrar's answer to a registration sent with a reply subject, when it refused some of its capabilities (a
 * contract that breaks another version, a schema that cannot be registered): the record it wrote into the registry
 * lacks them, and the provider should stop offering them. JSON. Nothing is answered when all were accepted.
 */
export interface RegistrationRefusal {
  refused: { capability: string; version: string; error: MigErrorBody }[];
}

/**
 * What each gateway (a runtime serving the public NATS subjects) keeps in the registry bucket under
 * `policy.<instance_id>`, renewed every `heartbeat_ms`: the fingerprint of its auth settings
 * (runtime/policy/policy-fingerprint.ts). A direct-lane worker answers only when its own equals every live gateway's.
 */
export interface GatewayPolicyRecord {
  v: number;
  instance_id: string;
  server_id: string;
  heartbeat_ms: number;
  auth_mode: string;
  /** Digest per setting, named by its environment variable. */
  parts: Record<string, string>;
  digest: string;
}

export function readGatewayPolicy(text: string): GatewayPolicyRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (
    !isObject(value) ||
    typeof value.instance_id !== "string" ||
    typeof value.digest !== "string" ||
    typeof value.auth_mode !== "string"
  )
    return undefined;
  if (!isObject(value.parts) || !Object.values(value.parts).every((part) => typeof part === "string")) return undefined;
  const heartbeat =
    typeof value.heartbeat_ms === "number" && value.heartbeat_ms > 0 ? value.heartbeat_ms : DEFAULT_HEARTBEAT_MS;
  const serverId = typeof value.server_id === "string" ? value.server_id : value.instance_id;
  return { ...(value as unknown as GatewayPolicyRecord), heartbeat_ms: heartbeat, server_id: serverId };
}

/**
 * A direct-lane worker's notice about one slow invocation (JSON), keyed by the caller's reply subject: held
 * while running (with the tenant and, when the caller gave one in a NATS header, the message id, for the
 * envelope a gateway would answer with), then released.
 */
export interface HeldNotice {
  reply: string | undefined;
  tenant_id?: string | undefined;
  message_id?: string | undefined;
  released?: true;
}

/** A direct-lane worker's hand-back of a request it declined, keyed by the caller's reply subject. */
export interface DeclinedNotice {
  reply: string;
}

/** Whether a capability may take the direct lane: best_effort (core request/reply) and unary. */
export function directEligible(descriptor: CapabilityDescriptor): boolean {
  return !usesWorkQueue(descriptor) && descriptor.modes.includes("unary");
}

/** What the gateway sends a provider for one invocation (msgpack map). */
export interface WorkRequest {
  v: number;
  capability: string;
  header: MessageHeader;
  payload: JsonObject;
  principal: { subject: string; tenant_id?: string; scopes: string[]; authenticated: boolean };
  /** Epoch milliseconds after which the caller no longer waits. */
  deadline_at: number;
  /** Where to send the reply; always set on the JetStream path, else the message's reply subject. */
  reply_to?: string;
  /** The capability version the gateway chose; a provider serving another version of it refuses the work. */
  version?: string;
}

/** What a provider answers: a result, an error, or (core path) a notice that it holds the work. */
export type WorkReply = { ok: true; payload: JsonObject } | { ok: false; error: MigErrorBody } | { accepted: string };

export interface CancelNotice {
  message_id: string;
  reason: string;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decode(data: Uint8Array): unknown {
  return packr.unpack(data);
}

export function principalOnWire(principal: Principal): WorkRequest["principal"] {
  const wire: WorkRequest["principal"] = {
    subject: principal.subject,
    scopes: [...principal.scopes],
    authenticated: principal.authenticated,
  };
  if (principal.tenant_id !== undefined) wire.tenant_id = principal.tenant_id;
  return wire;
}

export function principalFromWire(wire: WorkRequest["principal"]): Principal {
  return {
    subject: wire.subject,
    tenant_id: wire.tenant_id,
    scopes: new Set(wire.scopes),
    authenticated: wire.authenticated,
  };
}

/** A decoded protocol message that is a map (msgpack and JSON objects alike). */
export const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/** Decodes and shape-checks a work request; throws MIG_INVALID_REQUEST for anything else. */
export function readWorkRequest(data: Uint8Array): WorkRequest {
  let value: unknown;
  try {
    value = decode(data);
  } catch {
    throw new MigError("MIG_INVALID_REQUEST", "the work request is not msgpack");
  }
  if (
    !isObject(value) ||
    typeof value.capability !== "string" ||
    !isObject(value.header) ||
    typeof value.header.message_id !== "string" ||
    typeof value.header.tenant_id !== "string" ||
    !isObject(value.payload) ||
    !isObject(value.principal) ||
    typeof value.deadline_at !== "number"
  ) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      "the work request lacks capability, header, payload, principal or deadline_at",
    );
  }
  const principal = value.principal;
  if (typeof principal.subject !== "string" || !Array.isArray(principal.scopes)) {
    throw new MigError("MIG_INVALID_REQUEST", "the work request's principal is malformed");
  }
  return value as unknown as WorkRequest;
}

/** Decodes a provider's reply; undefined for garbage (the caller counts and logs it). */
export function readWorkReply(data: Uint8Array): WorkReply | undefined {
  let value: unknown;
  try {
    value = decode(data);
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  if (typeof value.accepted === "string") return { accepted: value.accepted };
  if (value.ok === true && isObject(value.payload)) return { ok: true, payload: value.payload };
  if (value.ok === false && isObject(value.error)) return { ok: false, error: value.error as unknown as MigErrorBody };
  return undefined;
}

export function readRegistration(text: string): Registration | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(value) || typeof value.provider_id !== "string" || !Array.isArray(value.capabilities)) return undefined;
  const heartbeat =
    typeof value.heartbeat_ms === "number" && value.heartbeat_ms > 0 ? value.heartbeat_ms : DEFAULT_HEARTBEAT_MS;
  const directFrom =
    typeof value.direct_from === "number" && Number.isFinite(value.direct_from) ? value.direct_from : undefined;
  const seq = typeof value.seq === "number" && Number.isSafeInteger(value.seq) ? value.seq : undefined;
  return { ...(value as unknown as Registration), heartbeat_ms: heartbeat, direct_from: directFrom, seq };
}
