// The NATS binding: serves the public mig.v0_1 subjects in one queue group, translating each request for the runtime.
import { Match, type Msg, type MsgHdrs, type Subscription } from "@nats-io/transport-node";
import {
  ADMISSION_CHUNK,
  type Authenticator,
  ChunkedAdmission,
  capabilityOf,
  type MigRuntime,
  type ParsedSubject,
  PUBLIC_SUBJECTS,
  parseJsonLimited,
  parseSubject,
  QUEUE_GROUP,
  type RequestContext,
  replySubjectAllowed,
  TurnBatch,
} from "../../runtime/mod.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import { MIRRORED_HEADER_FIELDS } from "../../schemas/nats-headers.ts";
import type { MessageHeader } from "../../schemas/types.ts";
import { HandBack } from "./hand-back.ts";
import { errorReply, replyHeaders } from "./reply-headers.ts";
import { serveNatsStreams } from "./stream.ts";

export interface NatsBinding {
  subjects: readonly string[];
  queue: string;
  /** Stops taking requests; requests already taken are still answered. */
  close(): Promise<void>;
}

export interface NatsBindingOptions {
  queue?: string;
  /** Subjects to serve instead of PUBLIC_SUBJECTS: a direct-lane worker serves only its capabilities' invoke subjects. */
  subjects?: readonly string[];
  /** Whether to serve stream control subjects too (default true). */
  streams?: boolean;
  /**
   * Whether this process answers an invoke at all. Declined requests are another process's to answer: by
   * default those of capabilities a direct-lane worker serves itself (worker/direct-lane.ts).
   */
  acceptsInvoke?: (subject: string) => boolean;
  /**
   * Told of each invoke `acceptsInvoke` declined: a direct-lane worker hands some back to the gateways. Without it,
   * a gateway remembers the invokes it left to the workers and answers those a worker hands back (hand-back.ts).
   */
  declined?: (msg: Msg) => void;
  /**
   * Told when each accepted request starts and ends, with the error it was answered with (the direct lane reports
   * slow ones to the gateways, and counts them for its worker's `$SRV.STATS`).
   */
  watch?: { started(msg: Msg): void; ended(msg: Msg, error: MigError | undefined): void };
}

type Operation = (
  runtime: MigRuntime,
  body: unknown,
  context: RequestContext,
  param: string | undefined,
) => Promise<unknown>;

const OPERATIONS: Record<ParsedSubject["operation"], Operation> = {
  hello: (rt, body, ctx) => rt.hello(body, ctx),
  discover: (rt, body, ctx) => rt.discover(body, ctx),
  heartbeat: (rt, body, ctx) => rt.heartbeat(body, ctx),
  invoke: (rt, body, ctx, capability) => rt.invoke(body, ctx, capability),
  cancel: (rt, body, ctx, messageId) => rt.cancel(body, ctx, messageId),
};

const decoder = new TextDecoder();

export async function startNatsBinding(
  runtime: MigRuntime,
  authenticator: Authenticator,
  options: NatsBindingOptions = {},
): Promise<NatsBinding> {
  const { nc } = runtime.bus;
  const queue = options.queue ?? QUEUE_GROUP;
  const limit = runtime.config.maxBodyBytes;
  const maxDepth = runtime.config.maxJsonDepth;
  const acceptsInvoke =
    options.acceptsInvoke ??
    ((subject: string) => !runtime.capabilities.servedDirect(capabilityOf(subject), Date.now()));
  const { watch } = options;
  // Made once, not per request: under tsx every closure made on the hot path also defines its name.
  const replyFailed = (e: unknown) =>
    runtime.logger.error({ err: (e as Error)?.stack ?? String(e) }, "NATS reply failed");
  // Replies leave in one write per turn of the event loop: replies settled in different microtask checkpoints of
  // one turn (requests from several socket reads, handlers of different depths) would each cost a write.
  const replies = new TurnBatch(nc, replyFailed);

  async function handle(msg: Msg): Promise<void> {
    let body: unknown;
    let reachedRuntime = false;
    let failure: MigError | undefined;
    const tenantHint = msg.subject.split(".", 3)[2];
    try {
      const parsed = parseSubject(msg.subject);
      body = parseBody(msg.data, limit, maxDepth);
      mergeHeaderFields(msg.headers, body);
      const principal = await authenticator.authenticate({
        authorization: msg.headers?.get("Authorization", Match.IgnoreCase) || undefined,
        actor: msg.headers?.get("X-Actor", Match.IgnoreCase) || undefined,
        binding: "nats",
        tenant: parsed.tenant,
        operation: parsed.operation,
      });
      const context: RequestContext = { principal, tenant: parsed.tenant, binding: "nats", bodyBytes: msg.data.length };
      reachedRuntime = true;
      const answer = (await OPERATIONS[parsed.operation](runtime, body, context, parsed.param)) as {
        header: MessageHeader;
      };
      replies.publish(msg.reply!, fitting(JSON.stringify(answer), nc.info?.max_payload), {
        headers: replyHeaders(answer.header),
      });
    } catch (err) {
      const error = toMigError(err);
      failure = error;
      if (!(err instanceof MigError))
        runtime.logger.error({ err: (err as Error)?.stack ?? String(err) }, "NATS request failed");
      // Operations count their own errors in guard(); refusals of the subject or body are counted here.
      if (!reachedRuntime) runtime.metrics.errors.inc({ code: error.code, operation: "nats_binding" });
      const { data, headers } = errorReply(error, body, tenantHint);
      replies.publish(msg.reply!, data, { headers });
    } finally {
      watch?.ended(msg, failure);
    }
  }

  // A chunk of requests per turn, their replies written before the next chunk starts (runtime/bus/chunked-admission.ts).
  const admission = new ChunkedAdmission<Msg>(
    ADMISSION_CHUNK,
    runtime.config.capacity,
    (msg) => void handle(msg).catch(replyFailed),
    replies.flush,
  );

  /** A request this process answers: checked for a reply subject it may publish to, then admitted. */
  const take = (msg: Msg): void => {
    if (!msg.reply) {
      // Nobody could receive an answer: counted and dropped, never executed.
      runtime.metrics.natsDropped.inc({ reason: "no_reply_subject" });
      runtime.logger.debug({ subject: msg.subject }, "request without a reply subject dropped");
      return;
    }
    if (!replySubjectAllowed(msg.reply, msg.subject.split(".", 3)[2] ?? "")) {
      // A reply-to outside the inboxes would make the runtime publish into someone else's subjects.
      runtime.metrics.natsDropped.inc({ reason: "reply_subject_refused" });
      runtime.logger.debug(
        { subject: msg.subject, reply: msg.reply.slice(0, 120) },
        "request with a reply subject outside the inboxes dropped",
      );
      return;
    }
    watch?.started(msg);
    admission.admit(msg);
  };

  const subjects = options.subjects ?? PUBLIC_SUBJECTS;
  // A gateway says which auth settings it answers with, before it answers: direct-lane workers answer only under the same ones (runtime/fleet/fleet.ts).
  const announced = options.subjects === undefined ? await runtime.fleet?.announcePolicy() : undefined;
  // A gateway answers what a direct-lane worker hands back of the invokes it left to the workers.
  const handBack = options.subjects === undefined && !options.declined ? new HandBack(nc, take) : undefined;
  const declined = options.declined ?? handBack?.leave.bind(handBack);
  const subscriptions: Subscription[] = subjects.map((subject) => {
    const isInvoke = subject.includes(".invoke.");
    return nc.subscribe(subject, {
      queue,
      callback: (err, msg) => {
        if (err) {
          runtime.logger.warn({ subject, err: err.message }, "NATS binding subscription error");
          return;
        }
        // First, and cheaply: a gateway receives a copy of every invoke a direct-lane worker answers.
        if (isInvoke && !acceptsInvoke(msg.subject)) return declined?.(msg);
        take(msg);
      },
    });
  });
  if (options.streams !== false) subscriptions.push(serveNatsStreams(runtime, authenticator, queue));
  await nc.flush();
  // A bus whose permissions refuse this user a subject closes that subscription (the server's -ERR arrives
  // before the flush's PONG). Serving a part of the subjects silently would leave callers unanswered.
  const refused = subscriptions.find((sub) => sub.isClosed());
  if (refused) {
    for (const sub of subscriptions) sub.unsubscribe();
    handBack?.close();
    await announced?.withdraw();
    throw new Error(
      `the bus refused this runtime a subscription to ${refused.getSubject()} (check its NATS user's permissions)`,
    );
  }
  return {
    subjects,
    queue,
    async close() {
      await announced?.withdraw();
      await Promise.all(subscriptions.map((sub) => sub.drain().catch(() => undefined)));
      handBack?.close();
      await admission.whenEmpty();
    },
  };
}

/**
 * The reply text, if the bus can carry it: nats.js refuses to publish more than the server's max_payload, and
 * would throw only when the batch is written, too late to tell the caller. Otherwise a MigError, answered instead.
 */
function fitting(text: string, maxPayload: number | undefined): string {
  // A UTF-8 string is at most 3 bytes per UTF-16 unit: most replies need no count.
  if (maxPayload === undefined || text.length * 3 < maxPayload - 4096) return text;
  const bytes = Buffer.byteLength(text);
  if (bytes <= maxPayload - 4096) return text;
  throw new MigError(
    "MIG_INTERNAL",
    `the answer is ${bytes} bytes, more than this NATS server carries in one message (max_payload ${maxPayload}); use a streaming binding or a smaller output`,
    {
      details: { answer_bytes: bytes, max_payload: maxPayload },
    },
  );
}

function parseBody(data: Uint8Array, limit: number, maxDepth: number): unknown {
  if (data.length > limit) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `the request body is larger than ${limit} bytes; send a smaller payload`,
      {
        details: { max_body_bytes: limit },
      },
    );
  }
  if (data.length === 0) return {};
  const text = decoder.decode(data);
  if (text.trim() === "") return {};
  // Nesting is bounded here, before anything runs: a deep body would otherwise overflow the stack later, when
  // an answer that echoes it (the header's meta) is serialized after the work is done.
  return parseJsonLimited(text, maxDepth);
}

/** NATS headers may carry MIG header fields; a field present in the body's header takes precedence. */
function mergeHeaderFields(headers: MsgHdrs | undefined, body: unknown): void {
  if (!headers || body === null || typeof body !== "object" || Array.isArray(body)) return;
  const target = body as { header?: unknown };
  for (const field of MIRRORED_HEADER_FIELDS) {
    const value = headers.get(field, Match.IgnoreCase);
    if (!value) continue;
    if (target.header === undefined || target.header === null) target.header = {};
    if (typeof target.header !== "object" || Array.isArray(target.header)) return;
    const header = target.header as Record<string, unknown>;
    if (header[field] === undefined || header[field] === "") header[field] = value;
  }
}
