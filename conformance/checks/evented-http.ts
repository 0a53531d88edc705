// Evented profile over HTTP: PUBLISH answers a PublishAck, SUBSCRIBE streams EventMessages over SSE, in order, with replay.

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { SseSubscription } from "../http-client.ts";
import { BASE } from "./fixtures.ts";

interface Published {
  event_id: string;
  sequence: number;
  payload: Record<string, unknown>;
}

function topicFor(ctx: CheckContext, name: string): string {
  return `conformance.${ctx.runId}.${name}`;
}

/** PUBLISHes `payload` and checks the PublishAck. */
async function publish(ctx: CheckContext, topic: string, payload: Record<string, unknown>): Promise<Published> {
  const answer = await ctx.post(`${BASE}/publish/${encodeURIComponent(topic)}`, {
    header: ctx.header(),
    topic,
    payload,
  });
  const ack = ctx.expectSuccess(answer, "PublishAck");
  ensure(ack.topic === topic, `PublishAck topic is ${brief(ack.topic)}, expected ${topic}`);
  ensure(typeof ack.event_id === "string" && ack.event_id !== "", `PublishAck event_id is ${brief(ack.event_id)}`);
  ensure(
    Number.isInteger(ack.sequence) && (ack.sequence as number) >= 0,
    `PublishAck sequence is ${brief(ack.sequence)}`,
  );
  ensure(ack.accepted === true, `PublishAck accepted is ${brief(ack.accepted)}`);
  return { event_id: ack.event_id, sequence: ack.sequence as number, payload };
}

/** The EventMessages received so far on a subscription (SSE `data` parsed), in arrival order. */
function messagesOf(sub: SseSubscription): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const event of sub.events.items) {
    try {
      const data: unknown = JSON.parse(event.data);
      if (isRecord(data)) out.push(data);
    } catch {
      // not JSON; reported by checkMessages
    }
  }
  return out;
}

/**
 * Checks every SSE event of `sub` as carrying a valid EventMessage for `topic`, and records it. The event name is not
 * checked: the reference writes `event: mig-event`, the standard names none.
 */
function checkMessages(ctx: CheckContext, sub: SseSubscription, topic: string): Record<string, unknown>[] {
  for (const event of sub.events.items) {
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      fail(`SSE data is not JSON: ${brief(event.data)}`);
    }
    ctx.record("http", `SSE ${topic}`, data);
    ctx.validate("EventMessage", data, "SSE data");
    ensure(
      isRecord(data) && data.topic === topic,
      `EventMessage topic is ${brief(isRecord(data) ? data.topic : data)}, expected ${topic}`,
    );
  }
  return messagesOf(sub);
}

function subscriptionFailure(sub: SseSubscription, what: string, timeoutMs: number): never {
  if (sub.status !== undefined && sub.status !== 200) fail(`SUBSCRIBE answered ${sub.status}: ${brief(sub.errorText)}`);
  const why = sub.events.failure ? ` (${sub.events.failure.message})` : "";
  fail(`${what} within ${timeoutMs} ms${why}; got ${sub.events.items.length} SSE events`);
}

const publishAck = check(
  "EVENT-1",
  "http",
  "publish-ack",
  "evented",
  "PUBLISH to a namespaced topic answers a PublishAck with topic, event_id, sequence and accepted: true",
  async (ctx) => {
    const published = await publish(ctx, topicFor(ctx, "ack"), { n: 1 });
    return `sequence ${published.sequence}`;
  },
);

const publishUnnamespaced = check(
  "EVENT-1",
  "http",
  "publish-unnamespaced",
  "evented",
  'PUBLISH to a topic without a "." is refused with MIG_INVALID_REQUEST',
  async (ctx) => {
    const topic = `conformance${ctx.runId}`;
    const answer = await ctx.post(`${BASE}/publish/${topic}`, { header: ctx.header(), topic, payload: { n: 1 } });
    ctx.expectError(answer, { codes: ["MIG_INVALID_REQUEST"] });
  },
);

const subscribeLive = check(
  "EVENT-2",
  "http",
  "subscribe-live",
  "evented",
  "an SSE subscriber receives an event published after it subscribed: an EventMessage with the ack's event_id, sequence and payload, replay: false",
  async (ctx) => {
    const topic = topicFor(ctx, "live");
    const sub = ctx.subscribe(`${BASE}/subscribe/${encodeURIComponent(topic)}`);
    const published: Published[] = [];
    const deadline = Date.now() + ctx.timeoutMs;
    const live = () =>
      messagesOf(sub).find((m) => m.replay === false && published.some((p) => p.event_id === m.event_id));
    // The subscription may be registered some time after the request is sent: publish until one arrives live.
    while (!live() && !sub.events.done && Date.now() < deadline) {
      published.push(await publish(ctx, topic, { n: published.length + 1 }));
      await sub.events.waitFor(() => live() !== undefined, 250);
    }
    const message = live();
    if (!message) subscriptionFailure(sub, "no live event arrived", ctx.timeoutMs);
    checkMessages(ctx, sub, topic);
    const source = published.find((p) => p.event_id === message.event_id) as Published;
    ensure(
      JSON.stringify(message.payload) === JSON.stringify(source.payload),
      `event payload ${brief(message.payload)} differs from the published ${brief(source.payload)}`,
    );
    ensure(
      message.sequence === source.sequence,
      `event sequence ${brief(message.sequence)}, PublishAck said ${source.sequence}`,
    );
    sub.close();
    return `after ${published.length} publish(es)`;
  },
);

/** Publishes three events on a fresh topic and replays them with `resume_cursor`. */
async function replay(ctx: CheckContext, name: string, cursor: (published: Published[]) => number) {
  const topic = topicFor(ctx, name);
  const published: Published[] = [];
  for (let n = 1; n <= 3; n++) published.push(await publish(ctx, topic, { n }));
  const from = cursor(published);
  const sub = ctx.subscribe(`${BASE}/subscribe/${encodeURIComponent(topic)}?resume_cursor=${from}`);
  const last = published[2] as Published;
  const arrived = await sub.events.waitFor(
    () => messagesOf(sub).some((m) => m.event_id === last.event_id),
    ctx.timeoutMs,
  );
  if (!arrived)
    subscriptionFailure(sub, `the replay from resume_cursor=${from} did not deliver the last event`, ctx.timeoutMs);
  const messages = checkMessages(ctx, sub, topic);
  sub.close();
  return { published, from, messages };
}

const ordering = check(
  "EVENT-3",
  "http",
  "ordering",
  "evented",
  "three events on one topic get increasing sequences, and a replay from resume_cursor=0 delivers them in that order",
  async (ctx) => {
    const { published, messages } = await replay(ctx, "order", () => 0);
    const sequences = published.map((p) => p.sequence);
    ensure(
      sequences[0]! < sequences[1]! && sequences[1]! < sequences[2]!,
      `PublishAck sequences ${brief(sequences)} do not increase`,
    );
    const ids = published.map((p) => p.event_id);
    const order = messages.map((m) => m.event_id).filter((id) => ids.includes(id as string));
    ensure(
      JSON.stringify(order) === JSON.stringify(ids),
      `events arrived as ${brief(order)}, published as ${brief(ids)}`,
    );
    const seen = messages.map((m) => m.sequence as number);
    ensure(
      seen.every((s, i) => i === 0 || s > seen[i - 1]!),
      `delivered sequences ${brief(seen)} do not increase`,
    );
  },
);

const replayFromCursor = check(
  "EVENT-4",
  "http",
  "replay-from-cursor",
  "evented",
  "SUBSCRIBE with resume_cursor=<first event's sequence> replays the later events, in order, marked replay: true",
  async (ctx) => {
    const { published, from, messages } = await replay(ctx, "replay", (p) => (p[0] as Published).sequence);
    const [first, second, third] = published as [Published, Published, Published];
    const ids = messages.map((m) => m.event_id);
    ensure(ids.includes(second.event_id) && ids.includes(third.event_id), `the replay delivered ${brief(ids)}`);
    ensure(ids.indexOf(second.event_id) < ids.indexOf(third.event_id), "the replay delivered the events out of order");
    const early = messages.filter((m) => typeof m.sequence === "number" && m.sequence < from);
    ensure(
      early.length === 0,
      `the replay delivered sequences before the cursor: ${brief(early.map((m) => m.sequence))}`,
    );
    const ours = messages.filter((m) => published.some((p) => p.event_id === m.event_id));
    const notReplay = ours.filter((m) => m.replay !== true);
    ensure(notReplay.length === 0, `replayed events with replay ${brief(notReplay.map((m) => m.replay))}`);
    return ids.includes(first.event_id) ? "the cursor is inclusive" : "the cursor is exclusive";
  },
);

export const eventedHttpChecks: Check[] = [publishAck, publishUnnamespaced, subscribeLive, ordering, replayFromCursor];
