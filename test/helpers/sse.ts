// Test helper: a Server-Sent Events client over node:http that parses frames and can stop reading (a slow subscriber).
import { type IncomingMessage, request } from "node:http";
import { waitFor } from "./runtime.ts";

export interface EventMessageLike {
  sequence: number;
  replay: boolean;
  event_id: string;
  topic: string;
  payload: Record<string, unknown>;
  [field: string]: unknown;
}

export interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
}

export class SseClient {
  readonly frames: SseFrame[] = [];
  readonly events: EventMessageLike[] = [];
  readonly comments: string[] = [];
  readonly errors: unknown[] = [];
  ended = false;
  private buffered = "";

  private constructor(
    private readonly res: IncomingMessage,
    private readonly destroy: () => void,
  ) {
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => this.feed(chunk));
    res.on("end", () => (this.ended = true));
    res.on("close", () => (this.ended = true));
    res.on("error", () => (this.ended = true));
  }

  /** Opens a subscription; a non-200 answer rejects with { status, body }. */
  static open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = request(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
        if (res.statusCode !== 200) {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => reject({ status: res.statusCode, body: JSON.parse(text) }));
          return;
        }
        resolve(new SseClient(res, () => req.destroy()));
      });
      req.on("error", reject);
      req.end();
    });
  }

  private feed(chunk: string): void {
    this.buffered += chunk;
    let end: number;
    while ((end = this.buffered.indexOf("\n\n")) !== -1) {
      const block = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 2);
      const frame: SseFrame = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) this.comments.push(line.slice(1).trim());
        else if (line.startsWith("id: ")) frame.id = line.slice(4);
        else if (line.startsWith("event: ")) frame.event = line.slice(7);
        else if (line.startsWith("data: ")) frame.data = line.slice(6);
      }
      if (frame.event === undefined && frame.data === undefined) continue;
      this.frames.push(frame);
      if (frame.event === "mig-event") this.events.push(JSON.parse(frame.data!) as EventMessageLike);
      else if (frame.event === "mig-error") this.errors.push(JSON.parse(frame.data!));
    }
  }

  /** Stops reading from the socket: the server's writes back up, as with a slow client. */
  pause(): void {
    this.res.pause();
  }

  resume(): void {
    this.res.resume();
  }

  waitForEvents(count: number, limitMs = 30_000): Promise<EventMessageLike[]> {
    return waitFor(
      `${count} events (have ${this.events.length})`,
      () => (this.events.length >= count ? this.events : undefined),
      limitMs,
    );
  }

  waitForComment(prefix: string, limitMs = 10_000): Promise<string> {
    return waitFor(`a comment starting "${prefix}"`, () => this.comments.find((c) => c.startsWith(prefix)), limitMs);
  }

  close(): void {
    this.destroy();
  }
}
