// Reads a benchmark child's heap through its inspector (a child started with --inspect=host:port):
// a full garbage collection first, so that heap and RSS figures count what is live, not what a
// lazy collector has yet to reclaim.
import WebSocket from "ws";

interface Reply {
  id: number;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** Forces a full GC in the process whose inspector listens on `port`; resolves with its heap after it. */
export async function heapAfterGc(port: number, timeoutMs = 30_000): Promise<{ used: number; total: number }> {
  const targets = (await (
    await fetch(`http://127.0.0.1:${port}/json/list`, { signal: AbortSignal.timeout(timeoutMs) })
  ).json()) as {
    webSocketDebuggerUrl: string;
  }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    let nextId = 0;
    const call = (method: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const id = ++nextId;
        const timer = setTimeout(
          () => reject(new Error(`inspector: ${method} gave no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
        const onMessage = (data: WebSocket.RawData) => {
          const reply = JSON.parse(data.toString()) as Reply;
          if (reply.id !== id) return;
          clearTimeout(timer);
          ws.off("message", onMessage);
          if (reply.error) reject(new Error(`inspector: ${method}: ${reply.error.message}`));
          else resolve(reply.result ?? {});
        };
        ws.on("message", onMessage);
        ws.send(JSON.stringify({ id, method }));
      });
    await call("HeapProfiler.collectGarbage");
    const usage = await call("Runtime.getHeapUsage");
    return { used: Number(usage.usedSize), total: Number(usage.totalSize) };
  } finally {
    ws.terminate();
  }
}
