// Formats benchmark row results as the terminal table.
import { BUSY_THRESHOLD } from "./background.ts";
import { cpuLine } from "./cpu.ts";
import type { Measurement, RowResult, SideResult } from "./types.ts";

const HEADER = ["side", "callers", "req/s", "spread", "p50 ms", "p99 ms", "p99.9 ms", "errors"];
const WIDTHS = [9, 8, 9, 7, 9, 9, 9, 7];

function cells(values: string[]): string {
  return values.map((v, i) => (i === 0 ? v.padEnd(WIDTHS[i]) : v.padStart(WIDTHS[i]))).join(" ");
}

function ms(n: number): string {
  return n < 10 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1);
}

/** How far apart the slices' throughputs were, relative to their mean. */
function spread(m: Measurement): string {
  const values = m.throughput_rps_slices;
  if (values.length < 2) return "-";
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (mean === 0) return "-";
  return `${Math.round(((Math.max(...values) - Math.min(...values)) / mean) * 100)}%`;
}

function line(side: string, m: Measurement): string {
  return cells([
    side,
    String(m.concurrency),
    m.throughput_rps.toFixed(0),
    spread(m),
    ms(m.latency_ms.p50),
    ms(m.latency_ms.p99),
    ms(m.latency_ms.p999),
    String(m.errors),
  ]);
}

function ratioText(value: number | null | undefined): string {
  return value === null || value === undefined ? "n/a" : value.toFixed(2);
}

/** "met" / "MISSED" against a target, or nothing when the row has none. */
function verdict(value: number | null | undefined, target: number | undefined, atLeast: boolean) {
  if (target === undefined) return "";
  const wanted = `${atLeast ? "≥" : "≤"} ${target}`;
  if (value === null || value === undefined) return ` (target ${wanted})`;
  const met = atLeast ? value >= target : value <= target;
  return ` (target ${wanted}: ${met ? "met" : "MISSED"})`;
}

/** The first line of an error, which is the one that says what went wrong. */
function short(error: string): string {
  const lines = error
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.length > 1 ? `${lines[0]} (…)` : (lines[0] ?? "");
}

export function formatRow(row: RowResult): string {
  const out = [`${row.name}  [${row.id}]`];
  if (row.status === "pending") {
    out.push(`  not run yet: ${row.error}`);
    return out.join("\n");
  }
  for (const [key, value] of Object.entries(row.figures ?? {})) out.push(`  ${key}: ${value}`);
  const sides: [string, SideResult | undefined][] = [
    ["baseline", row.baseline],
    ["path", row.path],
  ];
  for (const [name, side] of sides) if (side) out.push(`  ${name}: ${side.label}`);
  if (sides.some(([, side]) => side && side.results.length > 0)) {
    out.push(`  ${cells(HEADER)}`);
    for (const c of row.settings.concurrency) {
      for (const [name, side] of sides) {
        const m = side?.results.find((x) => x.concurrency === c);
        if (m) out.push(`  ${line(name, m)}`);
      }
    }
  }
  for (const c of row.settings.concurrency) {
    const cpu = sides.flatMap(([name, side]) => {
      const perCall = side?.results.find((x) => x.concurrency === c)?.cpu_us_per_call;
      return perCall ? [`${name} ${cpuLine(perCall)}`] : [];
    });
    if (cpu.length > 0) out.push(`  cpu µs per call @${c}: ${cpu.join(" · ")}`);
  }
  for (const [name, side] of sides) {
    if (side?.error) out.push(`  ${name} FAILED: ${short(side.error)}`);
  }
  if (row.status === "error" && !row.path?.error && !row.baseline?.error) {
    out.push(`  FAILED: ${short(row.error ?? "")}`);
  }
  const busiest = Math.max(0, ...sides.flatMap(([, side]) => side?.results.flatMap((m) => m.background_cpu) ?? []));
  if (busiest > BUSY_THRESHOLD) {
    out.push(
      `  note: other work on the machine used up to ${Math.round(busiest * 100)}% of its CPU during some slices; treat these figures as noisy`,
    );
  }
  const ratio = row.ratio;
  if (ratio && (ratio.p50_at_1 !== null || Object.values(ratio.throughput).some((v) => v !== null))) {
    const parts = Object.entries(ratio.throughput).map(([c, v]) => {
      const target = c === "64" ? row.targets?.throughput_at_64 : undefined;
      return `throughput@${c} ${ratioText(v)}${verdict(v, target, true)}`;
    });
    parts.push(`p50@1 ${ratioText(ratio.p50_at_1)}×${verdict(ratio.p50_at_1, row.targets?.p50_at_1, false)}`);
    out.push(`  path/baseline: ${parts.join(" · ")}`);
  }
  return out.join("\n");
}
