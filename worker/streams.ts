// Worker side of streams over the bus: takes the stream opens of the capabilities this worker serves, runs each
// stream, and either relays its frames to the gateway (runtime/fleet/remote-stream.ts) or, when the gateway handed
// a NATS stream off (runtime/fleet/stream-handoff.ts), publishes them on the caller's public subjects itself.
import { type Msg, nuid, type Subscription } from "@nats-io/transport-node";
import { openOnSubjects } from "../bindings/nats/stream.ts";
import {
  type StreamOpen,
  streamOpenSubject,
  type ToGateway,
  versionedStreamOpenSubject,
} from "../runtime/fleet/remote-stream.ts";
import type { FrameSink, StreamSession } from "../runtime/flow/stream-session.ts";
import type { Authenticator } from "../runtime/policy/auth.ts";
import { ControlGuard } from "../runtime/policy/control-guard.ts";
import {
  decode,
  encode,
  INTERNAL_PREFIX,
  isObject,
  principalFromWire,
  readWorkRequest,
  WORK_QUEUE,
} from "../runtime/protocol/provider-protocol.ts";
import type { CapabilityDefinition } from "../runtime/provider/provider.ts";
import { versionKey } from "../runtime/provider/versions.ts";
import type { MigRuntime } from "../runtime/runtime.ts";
import { MigError } from "../schemas/errors.ts";
import type { JsonObject } from "../schemas/types.ts";

interface WorkerStream {
  session: StreamSession | undefined;
  /** A handed-off stream's sink: silenced when the gateway has ended the stream for the caller itself. */
  mute?: () => void;
  /**
   * Set with mute: the gateway ends (or has ended) this stream itself, so its end is not reported either. An end
   * that reached the gateway before it heard of the worker's leave would make it forget the stream unanswered.
   */
  muted?: boolean;
  /** `written` callbacks of frames the gateway has not credited yet, oldest first. */
  uncredited: (() => void)[];
}

/**
 * Takes stream work for every definition with a stream handler: subscribes `_MIG.stream.<id>` in the
 * workers' queue group and one control subject for credits, caller frames and cancels. On a handed-off
 * stream's inbound subject the caller's frames must carry the token that opened it; `authenticator`
 * verifies another one (a refreshed token) when this worker may, i.e. its auth settings are the gateways'.
 * `serve` takes the stream opens of one more definition (a capability added while the worker runs); its
 * subscription is the caller's to drain when the capability goes.
 */
export function serveRemoteStreams(
  runtime: MigRuntime,
  definitions: CapabilityDefinition[],
  providerId: string,
  authenticator: () => Authenticator | undefined = () => undefined,
): {
  subscriptions: Subscription[];
  leaving: () => void;
  serve: (definition: CapabilityDefinition) => Subscription[];
} {
  const { nc } = runtime.bus;
  const prefix = `${INTERNAL_PREFIX}.swk.${nuid.next()}`;
  const live = new Map<string, WorkerStream>();
  let seq = 0;

  const onOpen = (msg: Msg, definition: CapabilityDefinition): void => {
    let request: StreamOpen;
    const served = definition.descriptor.version;
    try {
      request = readWorkRequest(msg.data) as StreamOpen;
      if (request.mode !== "server_stream" && request.mode !== "bidi_stream")
        throw new MigError("MIG_INVALID_REQUEST", "the stream open lacks a mode");
    } catch (err) {
      runtime.metrics.providerReplies.inc({ reason: "garbage_work" });
      if (msg.reply) nc.publish(msg.reply, encode(endOf(err)));
      return;
    }
    const to = request.reply_to ?? msg.reply;
    if (!to) return;
    if (typeof request.version === "string" && !sameVersion(request.version, served)) {
      nc.publish(to, encode(endOf(wrongVersion(request.version, definition))));
      return;
    }
    const token = (++seq).toString(36);
    const control = `${prefix}.${token}`;
    const entry: WorkerStream = { session: undefined, uncredited: [] };
    const reply = (message: ToGateway) => nc.publish(to, encode(message));
    // Frames emitted in the same turn of the event loop travel in one bus message.
    let batch: JsonObject[] = [];
    const flush = () => {
      if (batch.length === 0) return;
      reply(batch.length === 1 ? { frame: batch[0]! } : { frames: batch });
      batch = [];
    };
    const sink: FrameSink = {
      write(frame, written) {
        if (!frame.end_stream) {
          entry.uncredited.push(written);
          if (batch.push(frame.payload ?? {}) === 1) setImmediate(flush);
          return;
        }
        flush();
        live.delete(token);
        if (frame.kind === "response") reply({ end: true, ok: true, payload: frame.payload ?? {} });
        else if (frame.error) reply({ end: true, ok: false, error: frame.error });
        // A cancelled stream was cancelled by the gateway, which has already answered its caller.
      },
    };
    const remaining = request.deadline_at - Date.now();
    if (remaining <= 0) {
      reply(
        endOf(
          new MigError(
            "MIG_TIMEOUT",
            `the deadline of ${request.header.message_id} passed before a worker took the stream`,
          ),
        ),
      );
      return;
    }
    live.set(token, entry);
    const body = {
      header: { ...request.header, deadline_ms: remaining },
      capability: request.capability,
      payload: request.payload,
      stream_preference: request.mode,
    };
    const context = { principal: principalFromWire(request.principal), binding: "nats" as const };
    if (request.nats_stream_id !== undefined) {
      // Handed off: this process publishes the frames on the public subjects and reads the caller's itself.
      // The caller sees these frames as they are, so they carry its header (the deadline counts from deadline_at).
      try {
        const streamId = String(request.nats_stream_id);
        const digest = typeof request.nats_token_digest === "string" ? request.nats_token_digest : undefined;
        const guard = new ControlGuard(runtime, {
          opener: context.principal,
          digest,
          authenticator,
          what: "stream",
          target: streamId,
        });
        const { session, sink: onSubjects } = openOnSubjects(
          runtime,
          { ...body, header: request.header },
          context,
          streamId,
          remaining,
          guard,
          served,
        );
        entry.session = session;
        entry.mute = () => {
          entry.muted = true;
          onSubjects.mute();
        };
        // Sent after subscribing to the inbound subject: the caller, answered on this, may grant credit at once.
        reply({ open: providerId, control, window: runtime.config.streamWindow, nats: true });
        void session.ended.then((end) => {
          live.delete(token);
          if (entry.muted) return;
          reply(
            end.state === "completed"
              ? { end: true, ok: true, payload: {} }
              : { end: true, ok: false, error: end.error.toJSON() },
          );
        });
      } catch (err) {
        live.delete(token);
        reply(endOf(err));
      }
      return;
    }
    reply({ open: providerId, control, window: runtime.config.streamWindow });
    try {
      entry.session = runtime.openStream(body, context, {
        sink,
        clientFrames: request.mode === "bidi_stream",
        authorized: true,
        version: served,
      });
    } catch (err) {
      live.delete(token);
      reply(endOf(err));
    }
  };

  const onControl = (msg: Msg): void => {
    const entry = live.get(msg.subject.slice(prefix.length + 1));
    const session = entry?.session;
    if (!entry || !session) return;
    let message: unknown;
    try {
      message = decode(msg.data);
    } catch {
      message = undefined;
    }
    if (!isObject(message)) return;
    try {
      if (typeof message.credit === "number") {
        for (let i = 0; i < message.credit && entry.uncredited.length > 0; i++) entry.uncredited.shift()!();
      } else if (isObject(message.input)) session.receive(message.input, false);
      else if (message.input_end === true) session.receive(undefined, true);
      else if (typeof message.cancel === "string") {
        if (message.silent === true) entry.mute?.();
        session.cancel(message.cancel);
      }
    } catch {
      // A frame for a stream that just ended: nothing to do.
    }
  };

  // The capability's plain open subject (gateways of earlier releases, and anyone speaking the protocol without
  // versions) and its version's own, where gateways open the streams of that version.
  const serve = (definition: CapabilityDefinition): Subscription[] => {
    if (!definition.stream) return [];
    const { id, version } = definition.descriptor;
    return [streamOpenSubject(id), versionedStreamOpenSubject(id, version)].map((subject) =>
      nc.subscribe(subject, {
        queue: WORK_QUEUE,
        callback: (err, msg) => (err ? undefined : onOpen(msg, definition)),
      }),
    );
  };
  const subscriptions = [nc.subscribe(`${prefix}.*`, { callback: (err, msg) => (err ? undefined : onControl(msg)) })];
  for (const definition of definitions) subscriptions.push(...serve(definition));
  /**
   * The worker is about to leave the registry: each gateway then ends the streams it handed to this worker
   * with MIG_UNAVAILABLE, so they publish nothing more from here (their cancel at the runtime's stop
   * included): one terminal frame, the gateway's.
   */
  const leaving = () => {
    for (const entry of live.values()) entry.mute?.();
  };
  return { subscriptions, leaving, serve };
}

function sameVersion(a: string, b: string): boolean {
  return versionKey(a) === versionKey(b);
}

/**
 * Work for another version of a capability this worker serves: a gateway whose view of the fleet is a moment behind
 * (or a provider of that version that takes only the plain subjects). Retryable: the next try finds the right worker.
 */
export function wrongVersion(asked: string, definition: CapabilityDefinition): MigError {
  const { id, version } = definition.descriptor;
  return new MigError(
    "MIG_UNAVAILABLE",
    `the worker that took this call serves ${id} ${version}, not ${asked}; retry shortly`,
    { retryable: true, details: { capability: id, version: asked, served_version: version } },
  );
}

function endOf(err: unknown): ToGateway {
  const error = err instanceof MigError ? err : new MigError("MIG_INTERNAL", "the worker could not open the stream");
  return { end: true, ok: false, error: error.toJSON() };
}
