// The nesting limit checked before JSON.parse (runtime/protocol/json-limits.ts), at its boundary and on the texts
// that take each of its two ways: few opening brackets (counted, no scan) and many (scanned, strings excluded).
import { describe, expect, it } from "vitest";
import { parseJsonLimited } from "../runtime/protocol/json-limits.ts";
import { MigError } from "../schemas/errors.ts";

const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels);

function refusal(text: string, limit: number): MigError {
  try {
    parseJsonLimited(text, limit);
  } catch (err) {
    return err as MigError;
  }
  throw new Error("the text was accepted");
}

describe("parseJsonLimited", () => {
  it("accepts nesting up to the limit and refuses one level more, with the limit in the details", () => {
    expect(parseJsonLimited(nested(64), 64)).toBeInstanceOf(Array);
    const error = refusal(nested(65), 64);
    expect(error).toBeInstanceOf(MigError);
    expect(error.code).toBe("MIG_INVALID_REQUEST");
    expect(error.details).toEqual({ max_json_depth: 64 });
  });

  it("refuses deep nesting however the openers mix", () => {
    const mixed = `${'{"a":['.repeat(40)}1${"]}".repeat(40)}`;
    expect(refusal(mixed, 64).details).toEqual({ max_json_depth: 64 });
    expect(parseJsonLimited(mixed, 80)).toBeTypeOf("object");
  });

  it("accepts a shallow text with more openers than the limit, in strings or side by side", () => {
    const inStrings = JSON.stringify({ text: "{[".repeat(200) });
    expect(parseJsonLimited(inStrings, 8)).toEqual({ text: "{[".repeat(200) });
    const siblings = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i })));
    expect((parseJsonLimited(siblings, 8) as unknown[]).length).toBe(100);
  });

  it("names the parser's complaint for text that is not JSON, on either way", () => {
    expect(refusal('{"a": }', 64).message).toMatch(/^the request body is not valid JSON \(/);
    expect(refusal(`${"[".repeat(100)}x`, 200).message).toMatch(/^the request body is not valid JSON \(/);
  });
});
