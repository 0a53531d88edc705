// Test helper: a WebSocket client of GET /mig/v0.1/stream that sorts the frames it receives by stream_id.
import { randomUUID } from "node:crypto";
import WebSocket from "ws";

export type Frame = Record<string, any>;

export class StreamClient {
  /** Frames by stream_id, in arrival order. */
  readonly frames = new Map<string, Frame[]>();
  /** Every frame, in arrival order. */
  readonly all: Frame[] = [];
  /** stream_ids whose terminal frame arrived. */
  readonly done = new Set<string>();
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  closed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      this.all.push(frame);
      const list = this.frames.get(frame.stream_id) ?? [];
      list.push(frame);
      this.frames.set(frame.stream_id, list);
      if (frame.end_stream === true) this.done.add(frame.stream_id);
      this.wake();
    });
    ws.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(baseUrl: string, headers: Record<string, string> = {}): Promise<StreamClient> {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/mig/v0.1/stream`, { headers });
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(new StreamClient(ws)));
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) =>
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })),
      );
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** Sends a request frame that starts a stream; returns its stream_id and message_id. */
  start(
    capability: string,
    payload: unknown,
    options: { streamId?: string; tenant?: string; deadlineMs?: number; preference?: string } = {},
  ) {
    const streamId = options.streamId ?? `s-${randomUUID()}`;
    const messageId = randomUUID();
    const header: Frame = { tenant_id: options.tenant ?? "acme", message_id: messageId };
    if (options.deadlineMs) header.deadline_ms = options.deadlineMs;
    const frame: Frame = { header, stream_id: streamId, capability, kind: "request", payload };
    if (options.preference) frame.stream_preference = options.preference;
    this.send(frame);
    return { streamId, messageId };
  }

  of(streamId: string): Frame[] {
    return this.frames.get(streamId) ?? [];
  }

  /** Resolves when `check` holds (re-checked on every frame); rejects when the socket closes first. */
  until(what: string, check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          if (check()) return true;
          if (this.closed) {
            reject(new Error(`socket closed while waiting for ${what}`));
            return true;
          }
          return false;
        },
        resolve,
      };
      this.waiters.push(waiter);
    });
  }

  /** Resolves with the stream's frames once its terminal frame (end_stream: true) arrived. */
  async ended(streamId: string): Promise<Frame[]> {
    await this.until(`the end of ${streamId}`, () => this.done.has(streamId));
    return this.of(streamId);
  }

  close(): void {
    this.ws.terminate();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.check()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }
}
