// Rows measured by a standalone benchmark script (events.ts, stream.ts) rather than by a loader
// pair: the row runs the script as a child process with `--json`, reads the one JSON line it
// prints and turns it into the row's figures, with the target checked next to each ratio.
import { describe } from "./closed-loop.ts";
import { spawnTs } from "./processes.ts";
import type { BenchContext } from "./types.ts";

/** Runs `script` with `args` and resolves with the last JSON object line it printed on stdout. */
export async function runScript(
  ctx: BenchContext,
  name: string,
  script: string,
  args: string[],
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const child = spawnTs(name, ctx.root, script, args);
  let last: Record<string, unknown> | undefined;
  child.onLine((line) => {
    if (!line.startsWith("{")) return;
    try {
      last = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // not the figures line
    }
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const how = await Promise.race([child.exited, timedOut]);
    if (how === "timeout") throw new Error(`${script} did not finish within ${timeoutMs / 1000} s: ${child.tail()}`);
    if (how !== "exited with code 0") throw new Error(child.failure());
    if (!last) throw new Error(`${script} printed no JSON figures: ${child.tail()}`);
    return last;
  } catch (err) {
    throw new Error(describe(err));
  } finally {
    clearTimeout(timer);
    await child.stop(2_000);
  }
}

/** "met" / "MISSED" against a target, as the table prints it for pair rows. */
export function verdict(value: number, target: number, atLeast: boolean, unit = ""): string {
  const met = atLeast ? value >= target : value < target;
  return `${atLeast ? "≥" : "<"} ${target}${unit}: ${met ? "met" : "MISSED"}`;
}
