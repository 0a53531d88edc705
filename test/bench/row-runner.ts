// Measures one row: starts its path and baseline servers, runs a loader against each at every
// concurrency (baseline first, then path, so both see the same machine state), stops them and
// works out the ratios. A side that fails is reported in the row; the run goes on.
import { describe } from "./closed-loop.ts";
import { aggregate, runLoad } from "./measure.ts";
import { QUIET_THRESHOLD, waitForQuiet } from "./quiet.ts";
import type {
  BenchContext,
  LoadResult,
  RowDefinition,
  RowResult,
  RunSettings,
  RunningServer,
  ServerSpec,
  SideResult,
} from "./types.ts";

export const DEFAULT_CONCURRENCY = [1, 64];

interface Side {
  result: SideResult;
  server?: RunningServer;
}

export async function runRow(
  row: RowDefinition,
  ctx: BenchContext,
  settings: RunSettings,
  log: (line: string) => void,
): Promise<RowResult> {
  const concurrency = row.concurrency ?? DEFAULT_CONCURRENCY;
  const base: RowResult = {
    id: row.id,
    name: row.name,
    status: "ok",
    settings: {
      warmup_s: settings.warmupMs / 1000,
      duration_s: settings.durationMs / 1000,
      rounds: settings.rounds,
      concurrency,
      quiet_wait_s: settings.quietWaitMs / 1000,
    },
    ...(row.targets ? { targets: row.targets } : {}),
  };
  if (row.pending) return { ...base, status: "pending", error: row.pending };
  if (row.custom) {
    try {
      return { ...base, status: "custom", figures: await row.custom(ctx, settings) };
    } catch (err) {
      return { ...base, status: "error", error: describe(err) };
    }
  }

  const sides: { name: "baseline" | "path"; side: Side }[] = [];
  try {
    for (const name of ["baseline", "path"] as const) {
      const spec = row[name];
      if (spec) sides.push({ name, side: await startSide(spec, ctx, name, log) });
    }
    for (const c of concurrency) {
      const runs = new Map<Side, LoadResult[]>(sides.map(({ side }) => [side, []]));
      const background = new Map<Side, number[]>(sides.map(({ side }) => [side, []]));
      for (let round = 0; round < settings.rounds; round++) {
        // ABBA: alternate which side goes first, so a drift in background load cancels out
        const order = round % 2 === 0 ? sides : [...sides].reverse();
        for (const { name, side } of order) {
          if (!side.server || side.result.error) continue;
          const busy = await waitForQuiet(settings.quietWaitMs);
          log(
            `  ${name} at ${c} caller${c === 1 ? "" : "s"}, round ${round + 1}/${settings.rounds}` +
              (busy > QUIET_THRESHOLD ? ` (machine ${Math.round(busy * 100)}% busy with other work)` : ""),
          );
          background.get(side)!.push(busy);
          const result = await runLoad(ctx.root, side.server.target, c, settings);
          const gone = side.server.failure?.();
          if (result.error) side.result.error = result.error;
          else if (gone) side.result.error = `server died during the run: ${gone}`;
          else runs.get(side)!.push(result);
        }
      }
      for (const { side } of sides) {
        if (!side.result.error && runs.get(side)!.length > 0) {
          side.result.results.push(aggregate(c, runs.get(side)!, background.get(side)!));
        }
      }
    }
  } finally {
    await Promise.all(sides.map(({ side }) => side.server?.stop()));
  }

  const path = sides.find((s) => s.name === "path")?.side.result;
  const baseline = sides.find((s) => s.name === "baseline")?.side.result;
  const errors = [path?.error && `path: ${path.error}`, baseline?.error && `baseline: ${baseline.error}`]
    .filter(Boolean)
    .join("; ");
  return {
    ...base,
    status: errors ? "error" : path ? "ok" : "baseline-only",
    ...(errors ? { error: errors } : {}),
    ...(path ? { path } : {}),
    ...(baseline ? { baseline } : {}),
    ...(path && baseline ? { ratio: ratios(path, baseline, concurrency) } : {}),
  };
}

async function startSide(
  spec: ServerSpec,
  ctx: BenchContext,
  name: string,
  log: (line: string) => void,
): Promise<Side> {
  log(`  starting ${name}: ${spec.label}`);
  try {
    return { result: { label: spec.label, results: [] }, server: await spec.start(ctx) };
  } catch (err) {
    const error = `could not start: ${describe(err)}`;
    log(`  ${name} ${error}`);
    return { result: { label: spec.label, error, results: [] } };
  }
}

function ratios(path: SideResult, baseline: SideResult, concurrency: number[]) {
  const at = (side: SideResult, c: number) => side.results.find((r) => r.concurrency === c);
  const divide = (a: number | undefined, b: number | undefined) =>
    a && b ? Math.round((a / b) * 1000) / 1000 : null;
  const throughput: Record<string, number | null> = {};
  for (const c of concurrency) {
    throughput[String(c)] = divide(at(path, c)?.throughput_rps, at(baseline, c)?.throughput_rps);
  }
  return {
    throughput,
    p50_at_1: divide(at(path, 1)?.latency_ms.p50, at(baseline, 1)?.latency_ms.p50),
  };
}
