// Evented profile over NATS: a plain subscriber of mig.v0_1.<tenant>.events.<topic> gets each event once, and a durable SUBSCRIBE replays and resumes (JetStream).

import { brief, ensure, fail, isRecord } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { NatsMessage, NatsSubscription } from "../nats-client.ts";
import { expectReply, subject } from "./nats.ts";

interface Published {
  event_id: string;
  sequence: number;
  payload: Record<string, unknown>;
}

/** PUBLISH as a request on mig.v0_1.<tenant>.events.<topic>; fails unless the PublishAck accepts it. */
async function publish(ctx: CheckContext, topic: string, payload: Record<string, unknown>): Promise<Published> {
  const answer = await ctx.natsRequest(subject(ctx, "events", topic), { header: ctx.header(), topic, payload });
  const ack = expectReply(ctx, answer, "PublishAck");
  ensure(ack.accepted === true && typeof ack.event_id === "string", `PublishAck is ${brief(ack)}`);
  ensure(Number.isInteger(ack.sequence), `PublishAck sequence is ${brief(ack.sequence)}`);
  return { event_id: ack.event_id, sequence: ack.sequence as number, payload };
}

/** The EventMessages of `topic` among a subscription's messages (a plain subscriber also sees PUBLISH requests). */
function eventsOf(sub: NatsSubscription, topic: string): (NatsMessage & { body: Record<string, unknown> })[] {
  return sub.messages.items.filter(
    (m): m is NatsMessage & { body: Record<string, unknown> } =>
      isRecord(m.body) && m.body.topic === topic && typeof m.body.event_id === "string" && "sequence" in m.body,
  );
}

/** Waits until every one of `ids` arrived as an EventMessage; fails with what did arrive otherwise. */
async function waitForEvents(ctx: CheckContext, sub: NatsSubscription, topic: string, ids: string[], what: string) {
  const arrived = await sub.messages.waitFor(() => {
    const seen = new Set(eventsOf(sub, topic).map((m) => m.body.event_id));
    return ids.every((id) => seen.has(id));
  }, ctx.timeoutMs);
  const events = eventsOf(sub, topic);
  if (!arrived) {
    fail(
      `${what}: not every event arrived on ${sub.subject} within ${ctx.timeoutMs} ms; got ${events.length} EventMessages` +
        ` and ${sub.messages.items.length - events.length} other messages${sub.messages.items[0] ? `, the first ${brief(sub.messages.items[0].text, 80)}` : ""}`,
    );
  }
  for (const event of events) {
    ctx.record("nats", `NATS ${sub.subject}`, event.body);
    ctx.validate("EventMessage", event.body, `event on ${sub.subject}`);
  }
  return events;
}

const subscribePlain = check(
  "EVENT-2",
  "nats",
  "subscribe-plain",
  "evented",
  "a subscriber of mig.v0_1.<tenant>.events.<topic> gets an EventMessage for each of two PUBLISHes (ack's event_id, sequence and payload), and no event nobody published",
  async (ctx) => {
    const topic = `conformance.${ctx.runId}.nats-live`;
    const sub = await ctx.natsSubscribe(subject(ctx, "events", topic));
    const published: Published[] = [];
    for (let n = 1; n <= 2; n++) {
      const event = await publish(ctx, topic, { n });
      published.push(event);
      await waitForEvents(ctx, sub, topic, [event.event_id], `after PUBLISH ${n}`);
    }
    const events = eventsOf(sub, topic);
    for (const source of published) {
      const event = events.find((e) => e.body.event_id === source.event_id)?.body as Record<string, unknown>;
      ensure(
        event.sequence === source.sequence,
        `event sequence ${brief(event.sequence)}, PublishAck said ${source.sequence}`,
      );
      ensure(
        JSON.stringify(event.payload) === JSON.stringify(source.payload),
        `event payload ${brief(event.payload)} differs from the published ${brief(source.payload)}`,
      );
    }
    const unknown = [...new Set(events.map((e) => String(e.body.event_id)))].filter(
      (id) => !published.some((p) => p.event_id === id),
    );
    ensure(
      unknown.length === 0,
      `two PUBLISHes, but the subject carried ${unknown.length} more events nobody published (sequences ${brief(
        events.filter((e) => unknown.includes(String(e.body.event_id))).map((e) => e.body.sequence),
        80,
      )}): the server takes its own event copies for new PUBLISHes`,
    );
    sub.close();
    return `${sub.messages.items.length - events.length} other messages on the subject (PUBLISH requests)`;
  },
);

/** Opens a SUBSCRIBE over NATS (docs/events.md): its events go to a fresh inbox. */
async function subscribeDurable(ctx: CheckContext, topic: string, consumerId: string, cursor?: string) {
  const inbox = (await ctx.nats()).inbox();
  const sub = await ctx.natsSubscribe(inbox);
  const answer = await ctx.natsRequest(subject(ctx, "subscribe", topic), {
    header: ctx.header(),
    topic,
    consumer_id: consumerId,
    ...(cursor === undefined ? {} : { resume_cursor: cursor }),
    deliver_subject: inbox,
  });
  const body = answer.body;
  if (!isRecord(body) || "error" in body || typeof body.subscription_id !== "string") {
    fail(`SUBSCRIBE on ${answer.subject} answered ${brief(answer.text)}`);
  }
  return { sub, subscriptionId: body.subscription_id };
}

async function closeDurable(ctx: CheckContext, subscriptionId: string, sub: NatsSubscription): Promise<void> {
  const answer = await ctx.natsRequest(subject(ctx, "subscription", subscriptionId, "close"), { header: ctx.header() });
  ensure(isRecord(answer.body) && !("error" in answer.body), `closing the subscription answered ${brief(answer.text)}`);
  sub.close();
}

const jetstreamReplay = convention(
  "the standard names no NATS subject for a SUBSCRIBE with a cursor or a durable consumer; mig.v0_1.<tenant>.subscribe.<topic> with deliver_subject, and subscription.<id>.close, are this runtime's (docs/events.md)",
  check(
    "NATS-3",
    "nats",
    "jetstream-replay",
    "evented",
    "a durable SUBSCRIBE over NATS with resume_cursor 0 replays three events in order (replay: true); closed, then two more PUBLISHes, the same consumer_id resumes after the third without a gap",
    async (ctx) => {
      const topic = `conformance.${ctx.runId}.nats-durable`;
      const consumerId = `conformance-${ctx.runId}`;
      const first: Published[] = [];
      for (let n = 1; n <= 3; n++) first.push(await publish(ctx, topic, { n }));
      const one = await subscribeDurable(ctx, topic, consumerId, "0");
      const replayed = await waitForEvents(
        ctx,
        one.sub,
        topic,
        first.map((p) => p.event_id),
        "the replay",
      );
      for (const event of replayed) event.respond();
      ensure(
        JSON.stringify(replayed.map((e) => e.body.event_id)) === JSON.stringify(first.map((p) => p.event_id)),
        `the replay delivered ${brief(replayed.map((e) => e.body.sequence))}, published ${brief(first.map((p) => p.sequence))}`,
      );
      ensure(
        replayed.every((e) => e.body.replay === true),
        `replayed events carry replay ${brief(replayed.map((e) => e.body.replay))}`,
      );
      await closeDurable(ctx, one.subscriptionId, one.sub);

      const later: Published[] = [];
      for (let n = 4; n <= 5; n++) later.push(await publish(ctx, topic, { n }));
      const two = await subscribeDurable(ctx, topic, consumerId);
      const resumed = await waitForEvents(
        ctx,
        two.sub,
        topic,
        later.map((p) => p.event_id),
        "the resumed subscription",
      );
      for (const event of resumed) event.respond();
      await closeDurable(ctx, two.subscriptionId, two.sub);
      const sequences = resumed.map((e) => e.body.sequence as number);
      const [, , third] = first as [Published, Published, Published];
      ensure(
        sequences.every((s) => s >= third.sequence),
        `resuming consumer ${consumerId} delivered sequences ${brief(sequences)}: it started over instead of after sequence ${third.sequence}`,
      );
      ensure(
        sequences.every((s, i) => i === 0 || s === (sequences[i - 1] as number) + 1) &&
          sequences.at(-1) === later[1]?.sequence,
        `resuming consumer ${consumerId} delivered sequences ${brief(sequences)}; published ${brief(later.map((p) => p.sequence))} after ${third.sequence}`,
      );
      return sequences[0] === third.sequence
        ? `resumed at sequence ${sequences[0]} (the last acknowledged event again)`
        : `resumed exactly after sequence ${third.sequence}`;
    },
  ),
);

export const eventedNatsEventChecks: Check[] = [subscribePlain, jetstreamReplay];
