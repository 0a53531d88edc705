// The contract compatibility checker: a table of schema pairs, each judged as an input (a new version must accept every
// old input) and as an output (a new version must stay readable by old consumers), with the rule each verdict names;
// then recursive schemas, a schema of several MiB, and schemas that are not JSON Schema.
import { describe, expect, it } from "vitest";
import {
  type CompatibilityReport,
  compareContracts,
  compareSchemas,
  type Direction,
} from "../runtime/provider/schema-compat.ts";
import { MigError } from "../schemas/errors.ts";

/** What one direction must conclude: "compatible", or the rule of a breaking change (and where, when it matters). */
type Verdict = "compatible" | { rule: string; path?: string };

interface Pair {
  name: string;
  old: unknown;
  new: unknown;
  input: Verdict;
  output: Verdict;
}

const object = (properties: Record<string, unknown>, required: string[] = [], extra: Record<string, unknown> = {}) => ({
  type: "object",
  properties,
  required,
  ...extra,
});
const str = { type: "string" };
const int = { type: "integer" };

const PAIRS: Pair[] = [
  {
    name: "a required property is added",
    old: object({ a: str }),
    new: object({ a: str }, ["a"]),
    input: { rule: "required-added", path: "/properties/a" },
    output: "compatible",
  },
  {
    name: "a required property becomes optional",
    old: object({ a: str }, ["a"]),
    new: object({ a: str }),
    input: "compatible",
    output: { rule: "required-removed", path: "/properties/a" },
  },
  {
    name: "an optional property is added to an open object",
    old: object({ a: str }),
    new: object({ a: str, b: int }),
    input: "compatible",
    output: "compatible",
  },
  {
    name: "a property is removed from an open object",
    old: object({ a: str, b: int }),
    new: object({ a: str }),
    input: "compatible",
    output: { rule: "property-removed", path: "/properties/b" },
  },
  {
    name: "a property is removed from a closed object",
    old: object({ a: str, b: int }, [], { additionalProperties: false }),
    new: object({ a: str }, [], { additionalProperties: false }),
    input: { rule: "property-removed", path: "/properties/b" },
    output: "compatible",
  },
  {
    name: "a property is added to a closed object",
    old: object({ a: str }, [], { additionalProperties: false }),
    new: object({ a: str, b: int }, [], { additionalProperties: false }),
    input: "compatible",
    output: { rule: "property-added", path: "/properties/b" },
  },
  {
    name: "additionalProperties goes from true to false",
    old: object({ a: str }, [], { additionalProperties: true }),
    new: object({ a: str }, [], { additionalProperties: false }),
    input: { rule: "additional-properties-closed", path: "/additionalProperties" },
    output: "compatible",
  },
  {
    name: "additionalProperties goes from false to absent",
    old: object({ a: str }, [], { additionalProperties: false }),
    new: object({ a: str }),
    input: "compatible",
    output: { rule: "additional-properties-opened", path: "/additionalProperties" },
  },
  {
    name: "additionalProperties as a schema changes type",
    old: object({}, [], { additionalProperties: str }),
    new: object({}, [], { additionalProperties: int }),
    input: { rule: "type-narrowed", path: "/additionalProperties" },
    output: { rule: "type-widened", path: "/additionalProperties" },
  },
  {
    name: "a type is narrowed from string|integer to string",
    old: { type: ["string", "integer"] },
    new: str,
    input: { rule: "type-narrowed" },
    output: "compatible",
  },
  {
    name: "integer is widened to number",
    old: int,
    new: { type: "number" },
    input: "compatible",
    output: { rule: "type-widened" },
  },
  {
    name: "null is added to the type array",
    old: str,
    new: { type: ["string", "null"] },
    input: "compatible",
    output: { rule: "nullable-added" },
  },
  {
    name: "OpenAPI-style nullable: true is dropped",
    old: { type: "string", nullable: true },
    new: str,
    input: { rule: "nullable-removed" },
    output: "compatible",
  },
  {
    name: "null is allowed through an anyOf branch",
    old: str,
    new: { anyOf: [str, { type: "null" }] },
    input: "compatible",
    output: { rule: "nullable-added", path: "/anyOf/1" },
  },
  {
    name: "an enum value is added",
    old: { enum: ["red", "green"] },
    new: { enum: ["red", "green", "blue"] },
    input: "compatible",
    output: { rule: "enum-value-added" },
  },
  {
    name: "an enum value is removed",
    old: { type: "string", enum: ["red", "green"] },
    new: { type: "string", enum: ["red"] },
    input: { rule: "enum-value-removed" },
    output: "compatible",
  },
  {
    name: "an enum is added to a free string",
    old: str,
    new: { type: "string", enum: ["a", "b"] },
    input: { rule: "enum-added" },
    output: "compatible",
  },
  {
    name: "enum values that all meet the new pattern",
    old: { enum: ["ab", "ac"] },
    new: { type: "string", pattern: "^a" },
    input: "compatible",
    output: { rule: "enum-removed" },
  },
  {
    name: "a const changes",
    old: { const: "v1" },
    new: { const: "v2" },
    input: { rule: "const-changed" },
    output: { rule: "const-changed" },
  },
  {
    name: "minimum is raised",
    old: { type: "integer", minimum: 0 },
    new: { type: "integer", minimum: 18 },
    input: { rule: "minimum-raised" },
    output: "compatible",
  },
  {
    name: "maximum is removed",
    old: { type: "number", maximum: 100 },
    new: { type: "number" },
    input: "compatible",
    output: { rule: "maximum-removed" },
  },
  {
    name: "minimum becomes exclusive at the same value",
    old: { type: "number", minimum: 0 },
    new: { type: "number", exclusiveMinimum: 0 },
    input: { rule: "minimum-raised" },
    output: "compatible",
  },
  {
    name: "maxLength is lowered",
    old: { type: "string", maxLength: 64 },
    new: { type: "string", maxLength: 32 },
    input: { rule: "maxLength-lowered" },
    output: "compatible",
  },
  {
    name: "minLength is added",
    old: str,
    new: { type: "string", minLength: 1 },
    input: { rule: "minLength-added" },
    output: "compatible",
  },
  {
    name: "the pattern changes",
    old: { type: "string", pattern: "^[a-z]+$" },
    new: { type: "string", pattern: "^[a-z0-9]+$" },
    input: { rule: "pattern-changed" },
    output: { rule: "pattern-changed" },
  },
  {
    name: "the pattern stays the same",
    old: { type: "string", pattern: "^[a-z]+$", description: "old words" },
    new: { type: "string", pattern: "^[a-z]+$", description: "new words" },
    input: "compatible",
    output: "compatible",
  },
  {
    name: "a format is added",
    old: str,
    new: { type: "string", format: "email" },
    input: { rule: "format-added" },
    output: "compatible",
  },
  {
    name: "a format changes",
    old: { type: "string", format: "date" },
    new: { type: "string", format: "date-time" },
    input: { rule: "format-changed" },
    output: { rule: "format-changed" },
  },
  {
    name: "multipleOf 4 becomes 2",
    old: { type: "integer", multipleOf: 4 },
    new: { type: "integer", multipleOf: 2 },
    input: "compatible",
    output: { rule: "multipleOf-changed" },
  },
  {
    name: "array items widen",
    old: { type: "array", items: str },
    new: { type: "array", items: { type: ["string", "integer"] } },
    input: "compatible",
    output: { rule: "type-widened", path: "/items" },
  },
  {
    name: "maxItems is added",
    old: { type: "array", items: str },
    new: { type: "array", items: str, maxItems: 10 },
    input: { rule: "maxItems-added" },
    output: "compatible",
  },
  {
    name: "a tuple takes a second position",
    old: { type: "array", prefixItems: [str], items: false },
    new: { type: "array", prefixItems: [str, int], items: false },
    input: "compatible",
    output: { rule: "newly-accepted", path: "/prefixItems/1" },
  },
  {
    name: "a nested property's type changes deep inside arrays and objects",
    old: object({ orders: { type: "array", items: object({ total: { type: "number" } }, ["total"]) } }),
    new: object({ orders: { type: "array", items: object({ total: int }, ["total"]) } }),
    input: { rule: "type-narrowed", path: "/properties/orders/items/properties/total" },
    output: "compatible",
  },
  {
    name: "a $defs entry referenced from a property tightens",
    old: { $defs: { id: { type: "string", maxLength: 40 } }, ...object({ id: { $ref: "#/$defs/id" } }) },
    new: { $defs: { id: { type: "string", maxLength: 20 } }, ...object({ id: { $ref: "#/$defs/id" } }) },
    input: { rule: "maxLength-lowered", path: "/properties/id" },
    output: "compatible",
  },
  {
    name: "the same schema moves from definitions to $defs",
    old: { definitions: { name: str }, ...object({ name: { $ref: "#/definitions/name" } }, ["name"]) },
    new: { $defs: { label: str }, ...object({ name: { $ref: "#/$defs/label" } }, ["name"]) },
    input: "compatible",
    output: "compatible",
  },
  {
    name: "a $ref by anchor and by the root's $id reach a definition that widens",
    old: {
      $id: "schema://shop/order/v1",
      $defs: { amount: { $anchor: "amount", type: "integer" } },
      ...object({ total: { $ref: "#amount" }, tax: { $ref: "schema://shop/order/v1#/$defs/amount" } }),
    },
    new: {
      $id: "schema://shop/order/v1",
      $defs: { amount: { $anchor: "amount", type: "number" } },
      ...object({ total: { $ref: "#amount" }, tax: { $ref: "schema://shop/order/v1#/$defs/amount" } }),
    },
    input: "compatible",
    // Both references reach one definition: its change is reported once, where it is first met.
    output: { rule: "type-widened", path: "/properties/total" },
  },
  {
    name: "keywords beside a $ref apply too",
    old: { $defs: { s: str }, $ref: "#/$defs/s", maxLength: 5 },
    new: { $defs: { s: str }, $ref: "#/$defs/s", maxLength: 3 },
    input: { rule: "maxLength-lowered" },
    output: "compatible",
  },
  {
    name: "allOf composing a base and an extension gains a required property",
    old: {
      $defs: { base: object({ id: str }, ["id"]) },
      allOf: [{ $ref: "#/$defs/base" }, object({ note: str })],
    },
    new: {
      $defs: { base: object({ id: str }, ["id"]) },
      allOf: [{ $ref: "#/$defs/base" }, object({ note: str }, ["note"])],
    },
    input: { rule: "required-added", path: "/properties/note" },
    output: "compatible",
  },
  {
    name: "an anyOf branch is removed",
    old: { anyOf: [str, int] },
    new: { anyOf: [str] },
    input: { rule: "anyOf-branch-removed", path: "/anyOf/1" },
    output: "compatible",
  },
  {
    name: "a tagged oneOf tightens one variant",
    old: {
      oneOf: [
        object({ kind: { const: "card" }, number: str }, ["kind"]),
        object({ kind: { const: "iban" } }, ["kind"]),
      ],
    },
    new: {
      oneOf: [
        object({ kind: { const: "card" }, number: str }, ["kind", "number"]),
        object({ kind: { const: "iban" } }, ["kind"]),
      ],
    },
    input: { rule: "required-added", path: "/oneOf/0/properties/number" },
    output: "compatible",
  },
  {
    name: "a oneOf whose branches overlap changes",
    old: { oneOf: [str, { type: "string", maxLength: 3 }] },
    new: { oneOf: [str, { type: "string", maxLength: 4 }] },
    input: { rule: "undecidable: oneOf" },
    output: { rule: "undecidable: oneOf" },
  },
  {
    name: "an anyOf no single branch of which covers the old schema",
    old: { type: "string", maxLength: 5 },
    new: {
      anyOf: [
        { type: "string", maxLength: 3 },
        { type: "string", pattern: "^a" },
      ],
    },
    input: { rule: "undecidable: anyOf" },
    output: { rule: "maxLength-removed", path: "/anyOf/1" },
  },
  {
    name: "not changes",
    old: { not: { type: "null" } },
    new: { not: str },
    input: { rule: "undecidable: not" },
    output: { rule: "undecidable: not" },
  },
  {
    name: "an external $ref is kept as it is",
    old: object({ user: { $ref: "schema://accounts/user/v1" } }),
    new: object({ user: { $ref: "schema://accounts/user/v1" } }),
    input: "compatible",
    output: "compatible",
  },
  {
    name: "an external $ref moves to another schema",
    old: object({ user: { $ref: "schema://accounts/user/v1" } }),
    new: object({ user: { $ref: "schema://accounts/user/v2" } }),
    input: { rule: "undecidable: external $ref", path: "/properties/user" },
    output: { rule: "undecidable: external $ref", path: "/properties/user" },
  },
  {
    name: "true becomes false",
    old: true,
    new: false,
    input: { rule: "no-longer-accepted" },
    output: "compatible",
  },
  {
    name: "only annotations change",
    old: object({ a: { ...str, title: "A", description: "old", examples: ["x"] } }, ["a"]),
    new: object({ a: { ...str, title: "Ay", description: "new", deprecated: true } }, ["a"]),
    input: "compatible",
    output: "compatible",
  },
];

function judge(report: CompatibilityReport, verdict: Verdict): void {
  if (verdict === "compatible") {
    expect(report.breaking).toEqual([]);
    expect(report.compatible).toBe(true);
    return;
  }
  expect(report.compatible).toBe(false);
  const match = report.breaking.find(
    (change) => change.rule === verdict.rule && (verdict.path === undefined || change.path === verdict.path),
  );
  expect(
    match,
    `no ${verdict.rule} at ${verdict.path ?? "any path"} in ${JSON.stringify(report.breaking)}`,
  ).toBeDefined();
  expect(match!.message.length).toBeGreaterThan(10);
}

describe("schema pairs, each judged as input and as output", () => {
  it("holds enough pairs to cover the rules", () => {
    expect(PAIRS.length).toBeGreaterThanOrEqual(30);
  });

  for (const pair of PAIRS) {
    for (const direction of ["input", "output"] as Direction[]) {
      it(`${pair.name} (${direction})`, () => {
        const report = compareSchemas(pair.old, pair.new, direction);
        judge(report, pair[direction]);
        for (const change of [...report.breaking, ...report.notes]) expect(change.direction).toBe(direction);
      });
    }
  }

  it("a change breaking in one direction is a note in the other", () => {
    const old = object({ a: str }, ["a"]);
    const next = object({ a: str });
    expect(compareSchemas(old, next, "input").notes).toEqual([
      { direction: "input", path: "/properties/a", rule: "required-removed", message: expect.any(String) },
    ]);
  });
});

describe("options and contracts", () => {
  it("a property declared where the old input's open object took any value is a note, or breaking when strict", () => {
    const old = object({ a: str });
    const next = object({ a: str, b: int });
    expect(compareSchemas(old, next, "input").notes.map((change) => change.rule)).toEqual(["property-added"]);
    const strict = compareSchemas(old, next, "input", { strict: true });
    expect(strict.compatible).toBe(false);
    expect(strict.breaking.map((change) => [change.path, change.rule])).toEqual([["/properties/b", "property-added"]]);
  });

  it("notes: false gives the verdict without looking for safe changes", () => {
    const loosened = compareSchemas(object({ a: str }, ["a"]), object({ a: str }), "input", { notes: false });
    expect(loosened).toEqual({ compatible: true, breaking: [], notes: [] });
  });

  it("compareContracts judges the input contravariantly and the output covariantly, together", () => {
    const report = compareContracts(
      { input: object({ q: str }), output: object({ answer: str }, ["answer"]) },
      { input: object({ q: str, lang: str }), output: object({ answer: str, score: { type: "number" } }, ["answer"]) },
    );
    expect(report).toEqual({
      compatible: true,
      breaking: [],
      notes: [
        expect.objectContaining({ direction: "input", rule: "property-added", path: "/properties/lang" }),
        expect.objectContaining({ direction: "output", rule: "property-added", path: "/properties/score" }),
      ],
    });

    const broken = compareContracts(
      { input: object({ q: str }), output: object({ answer: str }, ["answer"]) },
      { input: object({ q: str }, ["q"]), output: object({ answer: str }) },
    );
    expect(broken.breaking.map((change) => [change.direction, change.rule])).toEqual([
      ["input", "required-added"],
      ["output", "required-removed"],
    ]);
  });

  it("an absent schema accepts anything: dropping an output schema breaks, dropping an input schema does not", () => {
    const report = compareContracts({ input: str, output: str }, {});
    expect(report.breaking.map((change) => [change.direction, change.rule])).toEqual([["output", "type-widened"]]);
  });
});

describe("recursive schemas", () => {
  const tree = (leaf: unknown) => ({
    $defs: { node: object({ value: leaf, children: { type: "array", items: { $ref: "#/$defs/node" } } }, ["value"]) },
    $ref: "#/$defs/node",
  });

  it("compares a self-referencing schema without looping, and finds a change on the cycle once", () => {
    expect(compareSchemas(tree(str), tree(str), "input")).toEqual({ compatible: true, breaking: [], notes: [] });
    const report = compareSchemas(tree(str), tree({ type: "string", maxLength: 8 }), "input");
    expect(report.breaking).toEqual([
      { direction: "input", path: "/properties/value", rule: "maxLength-added", message: expect.any(String) },
    ]);
  });

  it("follows mutual recursion through two definitions", () => {
    const schema = (limit?: number) => ({
      $defs: {
        person: object({ name: str, employer: { $ref: "#/$defs/company" } }, ["name"]),
        company: object({
          title: limit ? { type: "string", maxLength: limit } : str,
          staff: { type: "array", items: { $ref: "#/$defs/person" } },
        }),
      },
      $ref: "#/$defs/person",
    });
    expect(compareSchemas(schema(), schema(), "output").compatible).toBe(true);
    const report = compareSchemas(schema(), schema(10), "input");
    expect(report.breaking.map((change) => [change.path, change.rule])).toEqual([
      ["/properties/employer/properties/title", "maxLength-added"],
    ]);
  });

  it("the same recursive shape under another definition name is compatible", () => {
    const renamed = {
      definitions: {
        branch: object({ value: str, children: { type: "array", items: { $ref: "#/definitions/branch" } } }, ["value"]),
      },
      $ref: "#/definitions/branch",
    };
    expect(compareSchemas(tree(str), renamed, "input").compatible).toBe(true);
    expect(compareSchemas(tree(str), renamed, "output").compatible).toBe(true);
  });
});

describe("large schemas", () => {
  /** A contract with many fields, each reusing shared definitions, one of them recursive: several MiB of JSON. */
  function catalogue(fields: number, tightened?: number) {
    const properties: Record<string, unknown> = {};
    for (let i = 0; i < fields; i++) {
      properties[`field_${i}`] = object(
        {
          label: { type: "string", maxLength: i === tightened ? 50 : 100, description: "a label shown to people" },
          count: { type: "integer", minimum: 0 },
          status: { $ref: "#/$defs/status" },
          note: { anyOf: [str, { type: "null" }] },
          tags: { type: "array", items: { $ref: "#/$defs/tag" } },
        },
        ["label"],
      );
    }
    return {
      ...object(properties),
      $defs: {
        status: { type: "string", enum: Array.from({ length: 40 }, (_, i) => `state-${i}`) },
        tag: object({ name: str, children: { type: "array", items: { $ref: "#/$defs/tag" } } }),
      },
    };
  }

  it("compares two schemas of several MiB and finds the one change among them", () => {
    const old = catalogue(16_000);
    const next = catalogue(16_000, 12_345);
    expect(JSON.stringify(old).length).toBeGreaterThan(4 * 1024 * 1024);
    expect(compareSchemas(old, structuredClone(old), "input")).toEqual({ compatible: true, breaking: [], notes: [] });
    const report = compareSchemas(old, next, "input");
    expect(report.breaking).toEqual([
      {
        direction: "input",
        path: "/properties/field_12345/properties/label",
        rule: "maxLength-lowered",
        message: "maxLength was ≤ 100, now ≤ 50",
      },
    ]);
  });

  it("a chain of definitions that each use the previous one twice is compared pair by pair, not path by path", () => {
    // Unfolded, this schema has 2^60 paths; the checker memoizes each pair of definitions instead.
    const chain = (leaf: unknown) => {
      const $defs: Record<string, unknown> = { d0: leaf };
      for (let i = 1; i <= 60; i++) {
        $defs[`d${i}`] = {
          anyOf: [
            { $ref: `#/$defs/d${i - 1}` },
            object({ left: { $ref: `#/$defs/d${i - 1}` }, right: { $ref: `#/$defs/d${i - 1}` } }),
          ],
        };
      }
      return { $defs, $ref: "#/$defs/d60" };
    };
    expect(compareSchemas(chain(str), chain(str), "input").compatible).toBe(true);
    const report = compareSchemas(chain(str), chain({ type: "string", maxLength: 3 }), "input");
    expect(report.compatible).toBe(false);
    expect(report.breaking.some((change) => change.rule === "maxLength-added")).toBe(true);
  });
});

describe("schemas that are not JSON Schema", () => {
  function refusal(schema: unknown): MigError {
    try {
      compareSchemas(schema, true, "input");
    } catch (err) {
      expect(err).toBeInstanceOf(MigError);
      expect((err as MigError).code).toBe("MIG_INVALID_REQUEST");
      return err as MigError;
    }
    throw new Error("the schema was accepted");
  }

  it("names the place and what is wrong", () => {
    expect(refusal(object({ age: { type: "int" } })).message).toBe(
      'the old input schema is not valid JSON Schema 2020-12: at /properties/age/type, must be equal to one of the allowed values ("array", "boolean", "integer", "null", "number", "object", "string")',
    );
    expect(refusal({ type: "object", required: "name" }).message).toMatch(/at \/required, must be array/);
    expect(refusal({ minLength: -1 }).message).toMatch(/at \/minLength, must be >= 0/);
    expect(refusal(["not", "a", "schema"]).message).toMatch(/a schema is a JSON object or a boolean, not an array/);
  });

  it("refuses a $ref that points at nothing, a pattern that is no regular expression, and a $ref loop", () => {
    expect(refusal(object({ a: { $ref: "#/$defs/missing" } })).message).toMatch(
      /the \$ref "#\/\$defs\/missing" at \/properties\/a points at nothing in the document/,
    );
    expect(refusal(object({ a: { type: "string", pattern: "([a-z]" } })).message).toMatch(
      /at \/properties\/a\/pattern, "\(\[a-z\]" is not a regular expression/,
    );
    expect(
      refusal({ $defs: { a: { $ref: "#/$defs/b" }, b: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" }).message,
    ).toMatch(/leads back to itself/);
  });

  it("refuses another dialect than the registry's", () => {
    expect(refusal({ $schema: "http://json-schema.org/draft-07/schema#", type: "string" }).message).toMatch(
      /declares "\$schema": "http:\/\/json-schema.org\/draft-07\/schema#"/,
    );
  });

  it("says which version is wrong", () => {
    expect(() => compareSchemas(str, { type: 5 }, "output")).toThrow(/^the new output schema is not valid/);
  });
});
