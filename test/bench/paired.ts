// The ratio of two sides measured in alternating slices: each slice of the path against its neighbouring slice
// of the baseline, then the median over those pairs. A burst of load from elsewhere then moves one pair's value,
// not a whole side's figure, as a total or a best slice per side lets it do.

/** The median of `values` (the mean of the middle two for an even count); NaN when there are none. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** path[i] / baseline[i] for each pair where both are positive, then their median to three decimals; null when no pair is. */
export function pairedMedianRatio(path: number[] | undefined, baseline: number[] | undefined): number | null {
  if (!path || !baseline) return null;
  const ratios = path
    .slice(0, baseline.length)
    .map((value, i) => (baseline[i]! > 0 && value > 0 ? value / baseline[i]! : Number.NaN))
    .filter((ratio) => Number.isFinite(ratio));
  if (ratios.length === 0) return null;
  return Math.round(median(ratios) * 1000) / 1000;
}

/**
 * Runs `rounds` rounds of two sides in the order a, b, b, a, a, b, …: a drift in background load then falls on
 * both sides alike, and each side's slice has a neighbour of the other to be paired with.
 */
export async function alternate<T>(
  rounds: number,
  a: () => Promise<T>,
  b: () => Promise<T>,
): Promise<{ a: T[]; b: T[] }> {
  const sides = { a: [] as T[], b: [] as T[] };
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      sides.a.push(await a());
      sides.b.push(await b());
    } else {
      sides.b.push(await b());
      sides.a.push(await a());
    }
  }
  return sides;
}
