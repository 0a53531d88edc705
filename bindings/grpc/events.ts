// Events.Subscribe over gRPC: a server stream of EventMessages written only as fast as HTTP/2 takes them.
import { Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type {
  Authenticator,
  EventSink,
  MigRuntime,
  RequestContext,
  Subscription,
  SubscriptionInfo,
} from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import { credentialsOf, mergeHeaderFields, tenantOf } from "./metadata.ts";
import { decodedBody } from "./proto.ts";
import { statusFor } from "./status.ts";
import type { StreamingCalls } from "./streaming-calls.ts";
import { toProto } from "./translate.ts";

type Call = ServerWritableStream<unknown, unknown>;

/**
 * Writes a subscription's events to the call. An event counts as unsent from `write()` until its
 * write callback (grpc-js calls it once HTTP/2 has taken the bytes, within the peer's flow-control
 * window). The sink reports "full" when grpc-js's `write()` returns false or when max_inflight events
 * are unsent, and `drained()` waits for both to clear: a slow reader pauses the subscription (the
 * pump stops pulling; JetStream keeps the rest) instead of growing a buffer here.
 */
class GrpcEventSink implements EventSink {
  private unsent = 0;
  private unsentBytes = 0;
  private maxInflight = 1;
  private waiters: (() => void)[] = [];
  private ended = false;
  private info: SubscriptionInfo | undefined;

  constructor(private readonly call: Call) {
    call.on("drain", () => this.wake());
    call.on("cancelled", () => {
      this.ended = true;
      this.wake();
    });
    call.on("error", () => undefined); // a write after the client went away; 'cancelled' handles it
  }

  get gone(): boolean {
    return this.ended || this.call.cancelled || this.call.destroyed;
  }

  get bufferedBytes(): number {
    return this.unsentBytes;
  }

  open(info: SubscriptionInfo): void {
    this.info = info;
    this.maxInflight = info.max_inflight;
    // What the SSE binding says in its first comment, as initial metadata.
    const metadata = new Metadata();
    metadata.set("mig-subscription-id", info.subscription_id);
    metadata.set("mig-start-sequence", String(info.start_sequence));
    metadata.set("mig-replay-until", String(info.replay_until));
    metadata.set("mig-max-inflight", String(info.max_inflight));
    if (info.consumer_id !== undefined) metadata.set("mig-consumer-id", info.consumer_id);
    if (!this.gone) this.call.sendMetadata(metadata);
  }

  event(_sequence: number, json: string): boolean {
    if (this.gone) return true;
    const bytes = Buffer.byteLength(json);
    this.unsent++;
    this.unsentBytes += bytes;
    const accepted = this.call.write(toProto(JSON.parse(json) as JsonObject), () => {
      this.unsent--;
      this.unsentBytes -= bytes;
      if (this.unsent < this.maxInflight) this.wake();
    });
    return accepted && this.unsent < this.maxInflight;
  }

  notice(): void {
    // EventMessage has no room for notices; replay shows in each event's `replay` flag, pauses in
    // mig_subscription_pauses_total{binding="grpc"} and the actor state.
  }

  private full(): boolean {
    return this.call.writableNeedDrain || this.unsent >= this.maxInflight;
  }

  private wake(): void {
    if (!this.gone && this.full()) return;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }

  drained(): Promise<void> {
    if (this.gone || !this.full()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(error: MigError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.wake();
    if (this.call.cancelled || this.call.destroyed || this.call.writableEnded) return;
    if (error) this.call.emit("error", statusFor(error, this.info ? { header: this.info.header } : undefined));
    else this.call.end();
  }
}

/** Serves one Events.Subscribe call: authenticate, translate, subscribe; the call's end closes the subscription. */
export function serveSubscribe(
  runtime: MigRuntime,
  authenticator: Authenticator,
  call: Call,
  open: StreamingCalls,
): void {
  const tenant = tenantOf(call.metadata);
  const sink = new GrpcEventSink(call);
  let subscription: Subscription | undefined;
  const end = (reason: string) => {
    const error = new MigError("MIG_UNAVAILABLE", reason);
    if (subscription) subscription.close(error);
    else sink.close(error); // still subscribing: the call ends now, and the subscription when it arrives (sink.gone)
  };
  open.add(end);
  const forget = () => open.delete(end);
  call.once("finish", forget);
  call.once("cancelled", forget);
  let body: JsonObject | undefined;
  const start = async (): Promise<Subscription | undefined> => {
    const principal = await authenticator.authenticate({
      ...credentialsOf(call.metadata),
      binding: "grpc",
      tenant,
      operation: "subscribe",
    });
    body = decodedBody(call.request, runtime.config.maxJsonDepth);
    mergeHeaderFields(call.metadata, body);
    if (sink.gone) return undefined;
    const context: RequestContext = { principal, tenant, binding: "grpc" };
    return runtime.subscribe(body, context, undefined, sink);
  };
  start().then(
    (opened) => {
      if (!opened) return;
      subscription = opened;
      if (sink.gone) opened.close();
      else call.on("cancelled", () => opened.close());
    },
    (err: unknown) => {
      if (sink.gone) return;
      // runtime.subscribe counted its own refusals; like a unary call, authentication and decoding are not counted here.
      call.emit("error", statusFor(err, body, tenant));
    },
  );
}
