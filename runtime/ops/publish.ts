// PUBLISH: validates and authorizes an event, persists it in the topic's JetStream stream, then acknowledges it.

import { createHash, randomUUID } from "node:crypto";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, MessageHeader, PublishAck } from "../../schemas/types.ts";
import { tally } from "../base/metrics.ts";
import { withTraceparent } from "../base/tracing.ts";
import type { RuntimeCore } from "../core.ts";
import { authorizeCapability } from "../policy/policy.ts";
import { isoNow } from "../protocol/clock.ts";
import { checkDottedName, checkMessageId } from "../protocol/names.ts";
import type { Principal } from "../protocol/principal.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { deliveredJson, type EventStore, topicRef } from "../store/events.ts";
import { acceptRequest, agreeing, optionalStringField, requireObject } from "./request.ts";

export interface EventsCore extends RuntimeCore {
  events: EventStore;
}

export type { PublishAck };

const MAX_KEY_LENGTH = 256;

/** The topic of a request: named by the path (or subject) and/or the body, checked as a namespaced name. */
export function requestTopic(raw: JsonObject, pathTopic: string | undefined): string {
  const topic = agreeing(pathTopic, optionalStringField(raw, "topic", 1024), "topic");
  if (topic === undefined)
    throw new MigError("MIG_INVALID_REQUEST", "topic is required: name it in the path or in the body");
  return checkDottedName(topic, "topic", true);
}

/** A topic listed in a capability's event_topics takes that capability's scopes. */
export function authorizeTopic(core: RuntimeCore, principal: Principal, topic: string): void {
  for (const descriptor of core.capabilities.withEventTopic(topic)) authorizeCapability(principal, descriptor);
}

export async function publish(
  core: EventsCore,
  body: unknown,
  request: RequestContext,
  pathTopic?: string,
): Promise<PublishAck> {
  const { raw, header } = acceptRequest(core, body, request);
  const topic = requestTopic(raw, pathTopic);
  authorizeTopic(core, request.principal, topic);
  // Before the payload is read: a tenant past its rate costs the runtime as little as possible.
  core.events.admitPublish(header.tenant_id);
  const turn = core.fairShare.enter(header.tenant_id, header.deadline_ms);
  if (turn) await turn;
  try {
    return await store(core, raw, header, topic, request);
  } finally {
    core.fairShare.leave(header.tenant_id);
  }
}

/** Checks the event and appends it to its topic's stream (deduplicated by its key or id), then fans it out. */
async function store(
  core: EventsCore,
  raw: JsonObject,
  header: MessageHeader,
  topic: string,
  request: RequestContext,
): Promise<PublishAck> {
  const key = optionalStringField(raw, "key", MAX_KEY_LENGTH);
  if (raw.payload === undefined)
    throw new MigError("MIG_INVALID_REQUEST", "payload is required: send a JSON object, e.g. {}");
  const payload = requireObject(raw.payload, "payload");
  checkPayloadSize(payload, core.config.eventMaxPayloadBytes, request.bodyBytes);
  const givenId = optionalStringField(raw, "event_id", 64);
  const event_id = givenId === undefined ? randomUUID() : checkMessageId(givenId, "event_id");

  // The idempotency key (else the event id) is JetStream's Nats-Msg-Id: a repeat within the duplicate
  // window stores nothing. Hashed, because a NATS header value must not carry arbitrary bytes.
  const msgId =
    header.idempotency_key !== undefined
      ? `k:${createHash("sha256").update(header.idempotency_key).digest("base64url")}`
      : `e:${event_id}`;
  const ref = topicRef(header.tenant_id, topic);
  const published_at = isoNow();
  // The stored event carries this PUBLISH's span as its traceparent: each delivery, replays too, continues from it.
  const stored: JsonObject = { header: withTraceparent(header, request.span), topic, event_id };
  if (key !== undefined) stored.key = key;
  stored.payload = payload;
  stored.published_at = published_at;
  const storedJson = JSON.stringify(stored);

  const { seq, duplicate } = await core.events.append(ref, storedJson, msgId, key);
  if (duplicate) {
    tally(core.metrics.eventsCounted.deduplicated, ref);
    return { header, topic, event_id: await core.events.eventIdAt(ref, seq), sequence: seq, accepted: true };
  }
  tally(core.metrics.eventsCounted.published, ref);
  core.events.fanOut(ref, deliveredJson(storedJson, seq, false), header, key);
  return { header, topic, event_id, sequence: seq, accepted: true };
}

function checkPayloadSize(payload: JsonObject, max: number, bodyBytes: number | undefined): void {
  // The body is an upper bound of the payload's size: measure the payload only when the body is larger.
  if (bodyBytes !== undefined && bodyBytes <= max) return;
  const size = Buffer.byteLength(JSON.stringify(payload));
  if (size > max) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `the event payload is ${size} bytes; this server accepts at most ${max}`,
      {
        details: { max_payload_bytes: max, payload_bytes: size },
      },
    );
  }
}
