// Test helper: asserts that a wire body conforms to the named envelope of schemas/envelopes.json.
import { expect } from "vitest";
import { type EnvelopeName, validateEnvelope } from "../../schemas/envelopes.ts";

export function expectEnvelope(name: EnvelopeName, value: unknown): void {
  const result = validateEnvelope(name, value);
  expect(result.ok ? [] : result.errors, `${name}: ${JSON.stringify(value).slice(0, 300)}`).toEqual([]);
}

export function expectError(response: { status: number; body: any }, status: number, code: string): void {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expectEnvelope("ErrorEnvelope", response.body);
  expect(response.body.error.code).toBe(code);
  expect(typeof response.body.error.message).toBe("string");
  expect(response.body.error.message.length).toBeGreaterThan(10);
}
