// Formats benchmark row results as the terminal table.
import type { LoadResult, RowResult, SideResult } from "./types.ts";

const HEADER = ["side", "callers", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"];
const WIDTHS = [34, 8, 10, 9, 9, 9, 7];

function cells(values: string[]): string {
  return values
    .map((v, i) => (i === 0 ? v.slice(0, WIDTHS[i]).padEnd(WIDTHS[i]) : v.padStart(WIDTHS[i])))
    .join(" ");
}

function ms(n: number): string {
  return n < 10 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1);
}

function line(label: string, r: LoadResult): string {
  return cells([
    label,
    String(r.concurrency),
    r.throughput_rps.toFixed(0),
    ms(r.latency_ms.p50),
    ms(r.latency_ms.p99),
    ms(r.latency_ms.p999),
    String(r.errors),
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

export function formatRow(row: RowResult): string {
  const out = [`${row.name}  [${row.id}]`];
  if (row.status === "pending") {
    out.push(`  not run yet: ${row.error}`);
    return out.join("\n");
  }
  if (row.figures) {
    for (const [key, value] of Object.entries(row.figures)) out.push(`  ${key}: ${value}`);
  }
  const sides: [string, SideResult | undefined][] = [
    ["baseline", row.baseline],
    ["path", row.path],
  ];
  if (row.path || row.baseline) {
    out.push(`  ${cells(HEADER)}`);
    for (const c of row.settings.concurrency) {
      for (const [name, side] of sides) {
        const r = side?.results.find((x) => x.concurrency === c);
        if (r) out.push(`  ${line(`${name}: ${side!.label}`, r)}`);
      }
    }
  }
  for (const [name, side] of sides) {
    if (side?.error) out.push(`  ${name} failed: ${side.error.split("\n").join("\n    ")}`);
  }
  if (row.status === "error" && !row.path?.error && !row.baseline?.error) {
    out.push(`  failed: ${row.error}`);
  }
  if (row.ratio) {
    const parts = Object.entries(row.ratio.throughput).map(([c, v]) => {
      const target = c === "64" ? row.targets?.throughput_at_64 : undefined;
      return `throughput@${c} ${ratioText(v)}${verdict(v, target, true)}`;
    });
    const p50 = row.ratio.p50_at_1;
    parts.push(`p50@1 ${ratioText(p50)}×${verdict(p50, row.targets?.p50_at_1, false)}`);
    out.push(`  ratio path/baseline: ${parts.join(" · ")}`);
  }
  return out.join("\n");
}
