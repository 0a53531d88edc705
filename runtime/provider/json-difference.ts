// Where two JSON values first differ, as a JSON Pointer: what a refusal of a changed schema names for a person.

/** The JSON Pointer of the first place where `a` and `b` differ (key order aside), or undefined when they are equal. */
export function firstDifference(a: unknown, b: unknown, at = ""): string | undefined {
  if (a === b) return undefined;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return at;
  if (Array.isArray(a) !== Array.isArray(b)) return at;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    const shared = Math.min(a.length, other.length);
    for (let i = 0; i < shared; i++) {
      const found = firstDifference(a[i], other[i], `${at}/${i}`);
      if (found !== undefined) return found;
    }
    return a.length === other.length ? undefined : `${at}/${shared}`;
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  for (const key of Object.keys(left)) {
    const place = `${at}/${escapeToken(key)}`;
    if (!Object.hasOwn(right, key)) return place;
    const found = firstDifference(left[key], right[key], place);
    if (found !== undefined) return found;
  }
  for (const key of Object.keys(right)) if (!Object.hasOwn(left, key)) return `${at}/${escapeToken(key)}`;
  return undefined;
}

function escapeToken(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}
