// Gateway side of the stream hand-off: a NATS-bound stream of a worker-served capability is checked here and then run whole by the worker.
//
//   gateway                                              worker (queue group mig-workers)
//   ── open _MIG.stream[.@<version>].<capability> ─────▶  runs the session itself: frames as StreamFrame JSON on
//                                                        mig.v0_1.<tenant>.stream.<id>, the caller's credit, cancel
//                                                        and bidi frames from <that subject>.in
//   ◀─ {open, control, window, nats: true} on reply_to ─  subscribed to the inbound subject: the gateway answers the start
//   ── {cancel: reason} on control ─────────────────────▶ CANCEL of the message id at any gateway of the fleet
//   ── {cancel: reason, silent: true} on control ──────▶ the gateway ended the stream itself (the worker left the registry)
//   ◀─ {end, ok, …} on reply_to ─────────────────────────  the stream ended; its terminal frame is on the public subject
//
// Why: relaying every frame through the gateway cost a second bus hop, a second StreamSession and a
// credit round trip through two processes; the gateway's part that matters (authentication, validation, policy,
// quota, audit, the answer naming the subjects) happens before the first frame. What stays with the
// gateway: the stream's record, so CANCEL by message id works as before, and the MIG_UNAVAILABLE terminal
// frame when the worker dies. docs/bindings/provider-protocol.md §6 and docs/decisions.md, 'NATS streams of
// worker-served capabilities are handed off'.
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, JsonObject } from "../../schemas/types.ts";
import { withTraceparent } from "../base/tracing.ts";
import type { InflightStream } from "../flow/inflight.ts";
import { encodeFrame } from "../flow/stream-session.ts";
import { credentialDigest } from "../policy/control-guard.ts";
import { decode, encode, isObject, PROTOCOL_VERSION, principalOnWire } from "../protocol/provider-protocol.ts";
import { streamSubject } from "../protocol/subjects.ts";
import type { AcceptedStream } from "../provider/registry.ts";
import type { FleetHost } from "./fleet-host.ts";
import { openSubjectOf, type StreamOpen, streams } from "./remote-stream.ts";
import { perHost, ReplyInbox } from "./reply-inbox.ts";

/** How long a gateway waits for a worker to take a stream (or the stream's deadline, if sooner). */
export const HANDOFF_WAIT_MS = 5_000;
/** A handed-off stream whose end message never came is forgotten this long after its deadline. */
const FORGET_AFTER_DEADLINE_MS = 10_000;

const handOffs = new WeakMap<FleetHost, HandOffs>();

/** The hand-off of a capability that workers serve, or undefined when it does not stream. */
export function streamHandOff(
  runtime: FleetHost,
  descriptor: CapabilityDescriptor,
  versioned = false,
): ((stream: AcceptedStream) => Promise<void>) | undefined {
  if (!streams(descriptor)) return undefined;
  const it = perHost(handOffs, runtime, () => new HandOffs(runtime));
  const subject = openSubjectOf(descriptor, versioned);
  return (stream) => it.handOff(stream, subject);
}

/** A worker left the fleet: the streams handed to it end now with a MIG_UNAVAILABLE terminal frame from the gateway. */
export function handedOffStreamsProviderGone(runtime: FleetHost, providerId: string): void {
  handOffs.get(runtime)?.providerGone(providerId);
}

/** One per gateway: a single wildcard subscription receives every handed-off stream's open and end. */
class HandOffs {
  private readonly nc: NatsConnection;
  private readonly inbox: ReplyInbox<HandedOff>;

  constructor(private readonly runtime: FleetHost) {
    this.nc = runtime.bus.nc;
    this.inbox = new ReplyInbox(runtime, (stream, token, msg) => this.onMessage(stream, token, msg));
  }

  async handOff(accepted: AcceptedStream, subject: string): Promise<void> {
    const { header, entry, streamId } = accepted;
    const stream = new HandedOff(this.nc, accepted);
    const { token, subject: replyTo } = this.inbox.hold(stream);
    // In the stream table from now on: a second start with the same message id is refused, a CANCEL finds it.
    this.runtime.work.startStream(header.message_id, stream);
    const open: StreamOpen & { nats_stream_id: string } = {
      v: PROTOCOL_VERSION,
      capability: entry.descriptor.id,
      // The worker's spans continue from this process's stream span, when tracing is on.
      header: withTraceparent(header, accepted.span),
      payload: accepted.payload,
      principal: principalOnWire(accepted.principal),
      deadline_at: Date.now() + header.deadline_ms,
      reply_to: replyTo,
      version: entry.descriptor.version,
      mode: accepted.mode,
      nats_stream_id: streamId,
    };
    // The worker takes the caller's frames on the inbound subject only with the token that opened the stream.
    const digest = credentialDigest(accepted.principal);
    if (digest !== undefined) open.nats_token_digest = digest;
    this.nc.publish(subject, encode(open), { reply: open.reply_to });
    const waiting = setTimeout(
      () =>
        stream.refuse(
          new MigError(
            "MIG_UNAVAILABLE",
            `no worker took the stream of capability ${entry.descriptor.id} in time; retry it`,
            { retryable: true },
          ),
        ),
      Math.min(HANDOFF_WAIT_MS, header.deadline_ms),
    );
    try {
      await stream.opened;
    } catch (err) {
      this.forget(token, stream);
      throw err;
    } finally {
      clearTimeout(waiting);
    }
    stream.forgetTimer = setTimeout(() => this.forget(token, stream), header.deadline_ms + FORGET_AFTER_DEADLINE_MS);
    stream.forgetTimer.unref();
  }

  providerGone(providerId: string): void {
    for (const [token, stream] of this.inbox.entries()) {
      if (stream.provider !== providerId) continue;
      stream.endForCaller(
        new MigError("MIG_UNAVAILABLE", `the worker ${providerId} stopped while streaming; retry the stream`, {
          retryable: true,
          details: { provider_id: providerId },
        }),
      );
      this.forget(token, stream);
    }
  }

  private forget(token: string, stream: HandedOff): void {
    if (this.inbox.get(token) !== stream) return;
    this.inbox.release(token);
    clearTimeout(stream.forgetTimer);
    this.runtime.work.endStream(stream.messageId, stream, stream.isOpen);
  }

  private onMessage(stream: HandedOff, token: string, msg: Msg): void {
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      stream.refuse(
        new MigError("MIG_UNAVAILABLE", `no live worker streams capability ${stream.capability}; retry shortly`, {
          retryable: true,
        }),
      );
      return;
    }
    let message: unknown;
    try {
      message = decode(msg.data);
    } catch {
      message = undefined;
    }
    if (isObject(message) && typeof message.open === "string" && typeof message.control === "string") {
      if (message.nats !== true) {
        // A worker from before the hand-off took the open as one to relay: nobody would publish to the caller.
        this.nc.publish(
          message.control,
          encode({ cancel: "this gateway hands NATS streams off; the worker relays only" }),
        );
        stream.refuse(
          new MigError(
            "MIG_UNAVAILABLE",
            `the worker ${message.open} is too old to stream to NATS callers itself; retry, or upgrade it`,
            { retryable: true },
          ),
        );
        return;
      }
      stream.accept(message.open, message.control);
    } else if (isObject(message) && message.end === true) {
      // Before its open: the worker refused the stream, and the caller hears why. After: it has ended.
      if (!stream.isOpen) stream.refuse(MigError.fromBody(isObject(message.error) ? message.error : {}));
      else this.forget(token, stream);
    } else {
      this.runtime.metrics.providerReplies.inc({ reason: "garbage" });
    }
  }
}

/** The gateway's record of one handed-off stream: the target of CANCEL here, and of the worker's death. */
class HandedOff implements InflightStream {
  readonly messageId: string;
  readonly tenant: string;
  /** The caller's principal subject: CANCEL may be limited to it (MIG_CANCEL_SAME_SUBJECT). */
  readonly subject: string;
  readonly capability: string;
  readonly opened: Promise<void>;
  provider: string | undefined;
  forgetTimer: NodeJS.Timeout | undefined;
  private control: string | undefined;
  private resolve!: () => void;
  private reject!: (err: MigError) => void;
  private settled = false;
  /** A CANCEL that came before the worker's open: sent once the control subject is known. */
  private cancelReason: string | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly accepted: AcceptedStream,
  ) {
    this.messageId = accepted.header.message_id;
    this.tenant = accepted.header.tenant_id;
    this.subject = accepted.principal.subject;
    this.capability = accepted.entry.descriptor.id;
    this.opened = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  get isOpen(): boolean {
    return this.control !== undefined;
  }

  accept(provider: string, control: string): void {
    if (this.settled) return;
    this.settled = true;
    this.provider = provider;
    this.control = control;
    this.resolve();
    if (this.cancelReason !== undefined) this.cancel(this.cancelReason);
  }

  refuse(error: MigError): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(error);
  }

  /** CANCEL of the stream's message id: the worker's session cancels and publishes the one terminal frame. */
  cancel(reason: string): void {
    if (this.control) this.nc.publish(this.control, encode({ cancel: reason }));
    else this.cancelReason = reason;
  }

  /** Publishes the caller's terminal frame from here and tells the worker, if it still runs, to stop without one. */
  endForCaller(error: MigError): void {
    const { header, streamId } = this.accepted;
    const frame = {
      header,
      stream_id: streamId,
      capability: this.capability,
      kind: "error" as const,
      end_stream: true,
      error: error.toJSON(),
    };
    this.nc.publish(streamSubject(this.tenant, streamId), encodeFrame(frame));
    if (this.control)
      this.nc.publish(this.control, encode({ cancel: error.message, silent: true } satisfies JsonObject));
  }
}
