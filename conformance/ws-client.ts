// A WebSocket session on the HTTP binding's stream endpoint: send StreamFrames, collect the replies.

import WebSocket from "ws";
import { CheckFailure } from "./assert.ts";
import { Collector } from "./collector.ts";

export class WsSession {
  /** Every frame received, parsed as JSON (non-JSON text is kept as a string). */
  readonly frames = new Collector<unknown>();

  private constructor(private readonly socket: WebSocket) {
    socket.on("message", (data) => {
      const text = data.toString();
      try {
        this.frames.push(JSON.parse(text));
      } catch {
        this.frames.push(text);
      }
    });
    socket.on("close", () => this.frames.end(new Error("the server closed the WebSocket")));
    socket.on("error", (err) => this.frames.end(err));
  }

  /** Connects to `url` (http(s) is turned into ws(s)); fails the check when the upgrade is refused. */
  static open(url: string, headers: Record<string, string>, timeoutMs: number): Promise<WsSession> {
    const wsUrl = url.replace(/^http/, "ws");
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(wsUrl, { headers, handshakeTimeout: timeoutMs });
      socket.once("open", () => resolve(new WsSession(socket)));
      socket.once("unexpected-response", (_req, res) => {
        reject(
          new CheckFailure(`GET ${new URL(wsUrl).pathname} answered ${res.statusCode} instead of a WebSocket upgrade`),
        );
        res.resume();
        socket.terminate();
      });
      socket.once("error", (err) => reject(new CheckFailure(`WebSocket ${wsUrl}: ${err.message}`)));
    });
  }

  send(frame: unknown): void {
    this.socket.send(JSON.stringify(frame));
  }

  /** Stops reading the socket: what the server sends waits in TCP buffers, as with a consumer that stalls. */
  pause(): void {
    this.socket.pause();
  }

  /** Reads the socket again. */
  resume(): void {
    this.socket.resume();
  }

  close(): void {
    this.socket.removeAllListeners("close");
    this.frames.end();
    this.socket.terminate();
  }
}
