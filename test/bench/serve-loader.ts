// A load generator process of any loader file (`load-*.ts`, all built on closed-loop.ts) in serve mode, driven by a
// script: started once, it probes its target, then runs one lead-in plus measured window per command. Other JSON
// lines the loader prints before it is ready (such as the pid of a server it spawned) are kept in `notes`.
import { describe } from "./closed-loop.ts";
import { type Child, spawnTs, within } from "./processes.ts";
import type { LoadResult } from "./types.ts";

/** Time a loader may take beyond what it was asked to run: start-up, connecting, the probe, draining. */
const LOADER_SLACK_MS = 30_000;

export class ServeLoader {
  /** Every JSON line printed before the ready line, merged. */
  readonly notes: Record<string, unknown> = {};
  private readonly lines: Record<string, unknown>[] = [];
  private wake: (() => void) | undefined;

  private constructor(private readonly child: Child) {
    child.onLine((line) => {
      if (!line.startsWith("{")) return;
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return; // not a figures line
      }
      this.wake?.();
    });
    void child.exited.then(() => this.wake?.());
  }

  /** Starts `file` with `args` plus `--concurrency` and `--serve`; resolves once its probe has succeeded. */
  static async start(root: string, name: string, file: string, args: string[], concurrency: number) {
    const loader = new ServeLoader(
      spawnTs(name, root, file, [...args, "--concurrency", String(concurrency), "--serve"]),
    );
    try {
      for (;;) {
        const line = await loader.next(LOADER_SLACK_MS);
        if (line.ready === true) return loader;
        if ("error" in line) throw new Error(`${name}: ${String(line.error)}`);
        Object.assign(loader.notes, line);
      }
    } catch (err) {
      await loader.close();
      throw new Error(describe(err));
    }
  }

  get pid(): number {
    return this.child.pid;
  }

  /** One run: `leadInMs` of unmeasured calls, then `durationMs` measured. */
  async run(leadInMs: number, durationMs: number): Promise<LoadResult> {
    this.child.proc.stdin?.write(`${JSON.stringify({ warmup_ms: leadInMs, duration_ms: durationMs })}\n`);
    const result = (await this.next(leadInMs + durationMs + LOADER_SLACK_MS)) as unknown as LoadResult;
    if (result.error) throw new Error(result.error);
    return result;
  }

  /** Ends the loader: closing its stdin lets it close its connections and exit. */
  async close(): Promise<void> {
    this.child.proc.stdin?.end();
    await within(this.child.exited, 5_000);
    await this.child.stop(1_000);
  }

  private async next(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (!this.child.running) throw new Error(`loader gave no result: ${this.child.failure()}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        await this.child.stop(1_000);
        throw new Error(`loader gave no result within ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.lines.shift()!;
  }
}
