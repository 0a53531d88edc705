// Measures one row: starts its path and baseline servers; at each concurrency starts one loader
// per side, warms both up, then alternates measured slices between them (baseline, path, path,
// baseline, …) so that changes in background load fall on both sides alike; stops everything
// and works out the ratios. A side that fails is reported in the row; the run goes on.
import { BUSY_THRESHOLD, startCpuMeter } from "./background.ts";
import { describe } from "./closed-loop.ts";
import { callsOfRun, cpuPerCall, cpuSnapshot, medianPerKey } from "./cpu.ts";
import { aggregate, LoaderProcess } from "./measure.ts";
import { pairedMedianRatio } from "./paired.ts";
import type {
  BenchContext,
  LoadResult,
  RowDefinition,
  RowResult,
  RunningServer,
  RunSettings,
  ServerSpec,
  SideResult,
} from "./types.ts";

export const DEFAULT_CONCURRENCY = [1, 64];

interface Side {
  name: "baseline" | "path";
  result: SideResult;
  server?: RunningServer;
  /** The loader of the current concurrency. */
  loader?: LoaderProcess;
  slices: LoadResult[];
  background: number[];
  /** CPU µs per call of each process, one record per slice. */
  cpu: Record<string, number>[];
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
      settle_s: settings.settleMs / 1000,
      slices: settings.slices,
      concurrency,
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

  const sides: Side[] = [];
  try {
    const names = (["baseline", "path"] as const).filter((name) => row[name]);
    sides.push(...(await Promise.all(names.map((name) => startSide(name, row[name]!, ctx, log)))));
    for (const c of concurrency) await measureAt(c, sides, ctx, settings, log);
  } finally {
    await Promise.all(sides.map((side) => side.loader?.close()));
    await Promise.all(sides.map((side) => side.server?.stop()));
  }

  const path = sides.find((s) => s.name === "path")?.result;
  const baseline = sides.find((s) => s.name === "baseline")?.result;
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
  name: Side["name"],
  spec: ServerSpec,
  ctx: BenchContext,
  log: (line: string) => void,
): Promise<Side> {
  const side: Side = { name, result: { label: spec.label, results: [] }, slices: [], background: [], cpu: [] };
  log(`  starting ${name}: ${spec.label}`);
  try {
    side.server = await spec.start(ctx);
  } catch (err) {
    side.result.error = `could not start: ${describe(err)}`;
    log(`  ${name} ${side.result.error.split("\n")[0]}`);
  }
  return side;
}

/** One concurrency: a loader per side, a warm-up each, then the alternating slices. */
async function measureAt(
  c: number,
  sides: Side[],
  ctx: BenchContext,
  settings: RunSettings,
  log: (line: string) => void,
): Promise<void> {
  const usable = () => sides.filter((side) => side.server && !side.result.error);
  const fail = (side: Side, err: unknown) => {
    const gone = side.server?.failure?.();
    side.result.error = gone ? `server died during the run: ${gone}` : describe(err);
    log(`  ${side.name} failed: ${side.result.error.split("\n")[0]}`);
  };
  log(`  ${c} caller${c === 1 ? "" : "s"}: warm-up, then ${settings.slices} slices per side`);
  try {
    await Promise.all(
      usable().map(async (side) => {
        side.slices = [];
        side.background = [];
        side.cpu = [];
        try {
          side.loader = await LoaderProcess.start(ctx.root, side.server!.target, c);
        } catch (err) {
          fail(side, err);
        }
      }),
    );
    for (const side of usable()) {
      try {
        await side.loader!.run(settings.warmupMs, 0); // one side at a time: each gets the machine
      } catch (err) {
        fail(side, err);
      }
    }
    for (let slice = 0; slice < settings.slices; slice++) {
      const order = slice % 2 === 0 ? usable() : usable().reverse();
      for (const side of order) {
        const otherWork = startCpuMeter();
        const pids = { ...side.server!.processes?.(), client: side.loader!.pid };
        const cpu0 = cpuSnapshot(pids);
        try {
          const slice = await side.loader!.run(settings.settleMs, settings.durationMs);
          const gone = side.server?.failure?.();
          if (gone) throw new Error(gone);
          side.slices.push(slice);
          side.background.push(otherWork());
          side.cpu.push(cpuPerCall(cpu0, cpuSnapshot(pids), callsOfRun(slice, settings.settleMs, settings.durationMs)));
        } catch (err) {
          fail(side, err);
        }
      }
    }
    const busiest = Math.max(0, ...sides.flatMap((side) => side.background));
    if (busiest > BUSY_THRESHOLD) log(`    other work used up to ${Math.round(busiest * 100)}% of the machine`);
    for (const side of usable()) {
      if (side.slices.length > 0)
        side.result.results.push({ ...aggregate(c, side.slices, side.background), ...medianPerKey(side.cpu) });
    }
  } finally {
    await Promise.all(
      sides.map(async (side) => {
        await side.loader?.close();
        side.loader = undefined;
      }),
    );
  }
}

/** Path / baseline per pair of neighbouring slices, then the median over the pairs (paired.ts). */
function ratios(path: SideResult, baseline: SideResult, concurrency: number[]) {
  const at = (side: SideResult, c: number) => side.results.find((r) => r.concurrency === c);
  const throughput: Record<string, number | null> = {};
  for (const c of concurrency) {
    throughput[String(c)] = pairedMedianRatio(
      at(path, c)?.throughput_rps_slices,
      at(baseline, c)?.throughput_rps_slices,
    );
  }
  return {
    throughput,
    p50_at_1: pairedMedianRatio(at(path, 1)?.p50_ms_slices, at(baseline, 1)?.p50_ms_slices),
  };
}
