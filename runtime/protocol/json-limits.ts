// Parses untrusted JSON text with a nesting limit checked before JSON.parse builds anything, so a
// deeply nested body is refused at the edge instead of overflowing the stack later, when the answer
// (which may echo it) is serialized after the capability already ran.
import { MigError } from "../../schemas/errors.ts";

/** Deepest nesting of objects and arrays any binding accepts (docs/security.md). */
export const DEFAULT_MAX_JSON_DEPTH = 64;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The deepest nesting in `text`, stopping as soon as it passes `limit` (then it returns limit + 1).
 * Brackets inside strings do not count. Malformed text is left for JSON.parse to describe.
 */
export function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return deepest;
}

/**
 * Whether `text` holds at most `limit` opening braces and brackets in all (strings included): nesting deeper than
 * `limit` needs more than that many, so such a text needs no scan. Counted with `indexOf`, which runs natively:
 * most request bodies have a handful, and this costs them a fraction of the character-by-character scan.
 */
function fewOpeners(text: string, limit: number): boolean {
  let count = 0;
  for (let at = text.indexOf("{"); at !== -1; at = text.indexOf("{", at + 1)) if (++count > limit) return false;
  for (let at = text.indexOf("["); at !== -1; at = text.indexOf("[", at + 1)) if (++count > limit) return false;
  return true;
}

export function tooDeep(limit: number, what = "the request body"): MigError {
  return new MigError(
    "MIG_INVALID_REQUEST",
    `${what} nests objects or arrays deeper than ${limit} levels; flatten it`,
    {
      details: { max_json_depth: limit },
    },
  );
}

/** JSON.parse behind the depth limit; invalid JSON is MIG_INVALID_REQUEST naming the parser's complaint. */
export function parseJsonLimited(
  text: string,
  maxDepth: number = DEFAULT_MAX_JSON_DEPTH,
  what = "the request body",
): unknown {
  if (!fewOpeners(text, maxDepth) && jsonDepth(text, maxDepth) > maxDepth) throw tooDeep(maxDepth, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MigError("MIG_INVALID_REQUEST", `${what} is not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Depth of an already-built value (gRPC Structs, msgpack), bounded: it never descends past `limit`,
 * so it cannot overflow the stack itself.
 */
export function valueDepth(value: unknown, limit: number, depth = 0): number {
  if (value === null || typeof value !== "object") return depth;
  if (depth + 1 > limit) return depth + 1;
  let deepest = depth + 1;
  const children = Array.isArray(value) ? value : Object.values(value as Record<string, unknown>);
  for (const child of children) {
    const d = valueDepth(child, limit, depth + 1);
    if (d > deepest) {
      deepest = d;
      if (deepest > limit) return deepest;
    }
  }
  return deepest;
}
