// Payload schemas keyed by schema URI, each compiled once with Ajv and reused for every call.
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";

export class SchemaRegistry {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false });
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly sources = new Map<string, JsonObject>();

  constructor() {
    formats.default(this.ajv);
  }

  /** Registers a schema under its URI; registering the same URI again with a different schema is refused. */
  register(uri: string, schema: JsonObject): void {
    const existing = this.sources.get(uri);
    if (existing) {
      if (JSON.stringify(existing) === JSON.stringify(schema)) return;
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `schema ${uri} is already registered with different content; publish a new version under a new URI`,
      );
    }
    let validate: ValidateFunction;
    try {
      validate = this.ajv.compile(schema);
    } catch (err) {
      throw new MigError("MIG_INVALID_REQUEST", `schema ${uri} does not compile: ${(err as Error).message}`);
    }
    this.sources.set(uri, schema);
    this.validators.set(uri, validate);
  }

  has(uri: string): boolean {
    return this.validators.has(uri);
  }

  get(uri: string): JsonObject | undefined {
    return this.sources.get(uri);
  }

  list(): { uri: string; schema: JsonObject }[] {
    return [...this.sources].map(([uri, schema]) => ({ uri, schema }));
  }

  /** Returns the validation errors of a value, or undefined when it conforms (or the URI has no schema). */
  check(uri: string, value: unknown): string[] | undefined {
    const validate = this.validators.get(uri);
    if (!validate || validate(value)) return undefined;
    return (validate.errors ?? []).map(formatError);
  }
}

function formatError(error: ErrorObject): string {
  const where = error.instancePath === "" ? "payload" : `payload${error.instancePath.replace(/\//g, ".")}`;
  if (error.keyword === "required")
    return `${where} must have property "${(error.params as { missingProperty: string }).missingProperty}"`;
  if (error.keyword === "additionalProperties") {
    return `${where} must not have property "${(error.params as { additionalProperty: string }).additionalProperty}"`;
  }
  return `${where} ${error.message ?? "is invalid"}`;
}
