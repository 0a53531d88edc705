// Streams on public NATS subjects: a start request opens the stream; frames flow on mig.v0_1.<tenant>.stream.<stream_id> as the consumer grants credit.
import { randomUUID } from "node:crypto";
import { Match, type Msg, type Subscription } from "@nats-io/transport-node";
import {
  type Authenticator,
  ControlGuard,
  checkStreamId,
  checkTenant,
  type MigRuntime,
  parseJsonLimited,
  type RequestContext,
  rememberCredential,
  replySubjectAllowed,
  STREAM_START_SUBJECT,
  type StreamSession,
  streamInboundSubject,
  streamSubject,
} from "../../runtime/mod.ts";
import { MigError, toMigError } from "../../schemas/errors.ts";
import { CreditSink } from "./credit-sink.ts";
import { errorReply } from "./reply-headers.ts";

const decoder = new TextDecoder();

/** Serves STREAM_START_SUBJECT in the runtimes' queue group; a stream then lives on the gateway that started it, or in the worker it was handed to. */
export function serveNatsStreams(runtime: MigRuntime, authenticator: Authenticator, queue: string): Subscription {
  const { nc } = runtime.bus;

  async function start(msg: Msg): Promise<void> {
    const tenant = msg.subject.split(".")[2] ?? "";
    let body: unknown;
    let inbound: Subscription | undefined;
    try {
      checkTenant(tenant, "the tenant token of the stream start subject");
      body = parse(msg.data, runtime.config);
      const raw = body as Record<string, unknown>;
      const authorization = msg.headers?.get("Authorization", Match.IgnoreCase) || undefined;
      const principal = await authenticator.authenticate({
        authorization,
        actor: msg.headers?.get("X-Actor", Match.IgnoreCase) || undefined,
        binding: "nats",
        tenant,
        operation: "stream",
      });
      // The stream's control messages must come from this principal, here or in the worker it is handed to.
      rememberCredential(principal, authorization);
      const streamId =
        raw.stream_id === undefined || raw.stream_id === "" ? `stream-${randomUUID()}` : checkStreamId(raw.stream_id);
      const sink = new CreditSink(nc, streamSubject(tenant, streamId));
      // A worker-served capability is handed off: the worker publishes the frames and reads the inbound subject.
      const { header, capability, session } = await runtime.openBusStream(
        body,
        { principal, tenant, binding: "nats", bodyBytes: msg.data.length },
        {
          sink,
          streamId,
          clientFrames: true,
        },
      );
      if (session) {
        const guard = new ControlGuard(runtime, {
          opener: principal,
          authorization,
          authenticator: () => authenticator,
          what: "stream",
          target: streamId,
        });
        inbound = listenToCaller(runtime, session, sink, guard);
      }
      msg.respond(
        JSON.stringify({
          header,
          stream_id: streamId,
          capability,
          subject: streamSubject(tenant, streamId),
          inbound_subject: streamInboundSubject(tenant, streamId),
        }),
      );
    } catch (err) {
      inbound?.unsubscribe();
      const error = err instanceof MigError ? err : runtime.counted("stream", err);
      // With its code in the mig_error_code header, as every NATS error reply (docs/bindings/nats.md).
      const { data, headers } = errorReply(error, body, tenant);
      msg.respond(data, { headers });
    }
  }

  return nc.subscribe(STREAM_START_SUBJECT, {
    queue,
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      // As for every public subject: answer only into inboxes, never into someone else's subjects.
      if (!replySubjectAllowed(msg.reply, msg.subject.split(".", 3)[2] ?? "")) {
        runtime.metrics.natsDropped.inc({ reason: "reply_subject_refused" });
        return;
      }
      start(msg).catch((e: unknown) =>
        runtime.logger.error({ err: (e as Error)?.stack ?? String(e) }, "NATS stream start failed"),
      );
    },
  });
}

/** A stream start or a caller's frame, read within the body size and nesting limits (runtime/protocol/json-limits.ts). */
function parse(data: Uint8Array, limits: { maxBodyBytes: number; maxJsonDepth: number }): Record<string, unknown> {
  const limit = limits.maxBodyBytes;
  if (data.length > limit)
    throw new MigError("MIG_INVALID_REQUEST", `the request body is larger than ${limit} bytes`, {
      details: { max_body_bytes: limit },
    });
  const value = data.length === 0 ? {} : parseJsonLimited(decoder.decode(data), limits.maxJsonDepth);
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new MigError("MIG_INVALID_REQUEST", "the request body must be a JSON object");
  return value as Record<string, unknown>;
}

/**
 * Takes the caller's frames for `session` from its inbound subject until the stream ends. Subscribed
 * before the start is answered, so the consumer's first credit cannot come before anyone listens.
 * Only frames of the principal that opened the stream act on it (`guard`); others get an error reply,
 * when they name a reply subject, and change nothing.
 */
export function listenToCaller(
  runtime: MigRuntime,
  session: StreamSession,
  sink: CreditSink,
  guard: ControlGuard,
): Subscription {
  // Frames behind one whose token is being verified wait for it: bidi frames keep their order.
  let verifying: Promise<void> | undefined;
  const token = (m: Msg) => m.headers?.get("Authorization", Match.IgnoreCase) || undefined;
  const refuse = (m: Msg, err: unknown) => {
    if (!m.reply || !replySubjectAllowed(m.reply, session.tenant)) return;
    const { data, headers } = errorReply(err, { header: { tenant_id: session.tenant } }, session.tenant);
    m.respond(data, { headers });
  };
  const admit = (m: Msg) => guard.admit(token(m), "stream.control", session.tenant);
  const onFrame = (m: Msg) => {
    // In auth mode none nothing is checked; with the opener's own token, nothing is verified again.
    if (!guard.checks) return fromCaller(runtime, session, sink, m);
    let admitted: Promise<void>;
    if (verifying === undefined) {
      const now = admit(m);
      if (now === true) return fromCaller(runtime, session, sink, m);
      admitted = now;
    } else {
      admitted = verifying.then(async () => void (await admit(m)));
    }
    const turn = admitted.then(
      () => fromCaller(runtime, session, sink, m),
      (err: unknown) => refuse(m, err),
    );
    verifying = turn;
    void turn.finally(() => {
      if (verifying === turn) verifying = undefined;
    });
  };
  const inbound = runtime.bus.nc.subscribe(streamInboundSubject(session.tenant, session.streamId), {
    callback: (err, m) => (err ? undefined : onFrame(m)),
  });
  void session.ended.then(() => inbound.unsubscribe());
  return inbound;
}

/**
 * A worker's side of a handed-off stream (runtime/fleet/stream-handoff.ts): runs the stream of `body`, already
 * authorized by the gateway, with its frames on the public stream subject and the caller's on its inbound one, in the
 * capability version the gateway chose (`version`).
 */
export function openOnSubjects(
  runtime: MigRuntime,
  body: { header: { tenant_id: string } },
  request: RequestContext,
  streamId: string,
  deadlineMs: number,
  guard: ControlGuard,
  version?: string,
): { session: StreamSession; sink: CreditSink } {
  const tenant = checkTenant(body.header.tenant_id, "the tenant of a handed-off stream");
  const sink = new CreditSink(runtime.bus.nc, streamSubject(tenant, checkStreamId(streamId)));
  const session = runtime.openStream(body, request, {
    sink,
    streamId,
    clientFrames: true,
    authorized: true,
    deadlineMs,
    version,
  });
  listenToCaller(runtime, session, sink, guard);
  return { session, sink };
}

/** A frame from the caller on the inbound subject: credit, cancel, or a bidi request frame. A bad one ends the stream. */
function fromCaller(runtime: MigRuntime, session: StreamSession, sink: CreditSink, msg: Msg): void {
  if (session.isOver) return;
  let frame: Record<string, unknown>;
  try {
    frame = parse(msg.data, runtime.config);
  } catch (err) {
    session.fail(toMigError(err));
    return;
  }
  const payload =
    frame.payload !== null && typeof frame.payload === "object" ? (frame.payload as Record<string, unknown>) : {};
  try {
    if (frame.kind === "control" && payload.action === "credit") {
      const n = payload.credit;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 1_000_000)
        throw new MigError("MIG_INVALID_REQUEST", "payload.credit must be an integer from 1 to 1000000");
      sink.grant(n);
    } else if (frame.kind === "control" && payload.action === "cancel") {
      session.cancel(
        typeof payload.reason === "string" ? payload.reason.slice(0, 500) : "cancelled by a control frame",
      );
    } else if (frame.kind === "request") {
      session.receive(frame.payload, frame.end_stream === true);
    } else {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        'callers send request frames and control frames with payload.action "credit" or "cancel"',
      );
    }
  } catch (err) {
    session.fail(toMigError(err));
  }
}
