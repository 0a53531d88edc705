// Payload schemas keyed by schema URI, each compiled once with Ajv and reused for every call; a URI keeps the body it
// was first registered with, in this process and (through runtime/provider/schema-store.ts) in the whole fleet.
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import type { Logger } from "../base/logger.ts";
import type { Bus } from "../bus/bus.ts";
import { firstDifference } from "./json-difference.ts";
import { compareSchemas } from "./schema-compat.ts";
import { MAX_SCHEMA_BYTES, MAX_SCHEMA_URI_LENGTH, SchemaStore } from "./schema-store.ts";

const URI = /^[a-z][a-z0-9+.-]*:\S+$/i;

export class SchemaRegistry {
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false });
  private readonly validators = new Map<string, ValidateFunction>();
  private readonly sources = new Map<string, JsonObject>();
  private store: SchemaStore | undefined;
  private logger: Logger | undefined;
  /**
   * Called when the store replaced a body this process held (another runtime registered the URI first); returns
   * what it refused because of it (the capabilities built on the replaced body), for the log.
   */
  onReplaced: ((uri: string) => string[]) | undefined;

  constructor() {
    formats.default(this.ajv);
  }

  /**
   * Registers a schema under its URI in this process (and, once the store is attached, in the fleet's store, without
   * waiting). The same body again changes nothing; another body is refused, naming the first difference.
   */
  register(uri: string, schema: JsonObject): void {
    this.registerAll({ [uri]: schema });
  }

  /**
   * Registers several schemas that may refer to each other, all or none (every check of `checkAll` applies), and
   * stores the new ones in the fleet's store without waiting. Returns the URIs that were new.
   */
  registerAll(schemas: Record<string, JsonObject>): string[] {
    const added = this.compileAll(schemas, false);
    for (const uri of added) this.persistLater(uri, schemas[uri]!);
    return added;
  }

  /** Registers several schemas (all or none) and stores them in the fleet's store, waiting for it. */
  async publishAll(schemas: Record<string, JsonObject>): Promise<string[]> {
    const added = this.compileAll(schemas, false);
    const store = this.store;
    if (!store) return added;
    for (const uri of Object.keys(schemas)) {
      const schema = schemas[uri]!;
      let first: JsonObject | undefined;
      try {
        first = await store.create(uri, schema);
      } catch (err) {
        for (const uri of added) this.forget(uri);
        throw new MigError("MIG_UNAVAILABLE", `the schema store did not take ${uri}; retry shortly`, {
          cause: err,
          details: { uri },
        });
      }
      if (first !== undefined && firstDifference(first, schema) !== undefined) {
        // Another runtime stored the URI first, with another body: it is the fleet's, this one is refused.
        for (const uri of added) this.forget(uri);
        this.adopt(uri, first);
        throw conflict(uri, first, schema);
      }
    }
    return added;
  }

  /**
   * Throws the MigError that registering `schemas` would: a URI that is not one, a body that is not an object or is
   * too large, one that is not valid JSON Schema 2020-12 (a `$ref` that points at nothing or leads back to itself
   * included), a `$ref` to a schema URI that is not registered, or a URI registered with another body.
   */
  checkAll(schemas: Record<string, JsonObject>): void {
    this.compileAll(schemas, true);
  }

  private compileAll(schemas: Record<string, JsonObject>, dryRun: boolean): string[] {
    const fresh: [string, JsonObject][] = [];
    for (const [uri, schema] of Object.entries(schemas)) {
      checkShape(uri, schema);
      const existing = this.sources.get(uri);
      if (existing) {
        if (firstDifference(existing, schema) !== undefined) throw conflict(uri, existing, schema);
        continue;
      }
      checkSchema(uri, schema);
      fresh.push([uri, schema]);
    }
    if (fresh.length === 0) return [];
    const compiled: [string, ValidateFunction][] = [];
    try {
      for (const [uri, schema] of fresh) this.ajv.addSchema(schema, uri);
      for (const [uri] of fresh) compiled.push([uri, this.compile(uri)]);
    } catch (err) {
      for (const [uri, schema] of fresh) this.removeFromAjv(uri, schema);
      throw err;
    }
    if (dryRun) {
      for (const [uri, schema] of fresh) this.removeFromAjv(uri, schema);
      return [];
    }
    for (const [uri, schema] of fresh) this.sources.set(uri, schema);
    for (const [uri, validate] of compiled) this.validators.set(uri, validate);
    return fresh.map(([uri]) => uri);
  }

  private compile(uri: string): ValidateFunction {
    try {
      const validate = this.ajv.getSchema(uri);
      if (!validate) throw new Error("Ajv lost it");
      return validate;
    } catch (err) {
      const missing = (err as { missingSchema?: unknown }).missingSchema;
      if (typeof missing === "string" && missing !== "") {
        throw new MigError(
          "MIG_INVALID_REQUEST",
          `schema ${uri} has a $ref to ${missing}, which is not a registered schema: register ${missing} first (POST /admin/v0.1/schemas)`,
          { details: { uri, missing_schema: missing } },
        );
      }
      if (err instanceof RangeError) {
        throw new MigError("MIG_INVALID_REQUEST", `schema ${uri} is nested too deeply to compile`, {
          details: { uri },
        });
      }
      throw new MigError("MIG_INVALID_REQUEST", `schema ${uri} does not compile: ${(err as Error).message}`, {
        details: { uri },
      });
    }
  }

  private removeFromAjv(uri: string, schema: JsonObject): void {
    this.ajv.removeSchema(uri);
    if (typeof schema.$id === "string") this.ajv.removeSchema(schema.$id);
  }

  private forget(uri: string): void {
    const schema = this.sources.get(uri);
    if (!schema) return;
    this.sources.delete(uri);
    this.validators.delete(uri);
    this.removeFromAjv(uri, schema);
  }

  /**
   * Takes a body from the fleet's store. The store is the fleet's memory: a URI this process held with another body
   * (registered here while another runtime stored it first) takes the stored one, and the conflict is logged.
   */
  private adopt(uri: string, schema: JsonObject): void {
    const existing = this.sources.get(uri);
    if (existing) {
      const at = firstDifference(existing, schema);
      if (at === undefined) return;
      this.forget(uri);
      try {
        this.compileAll({ [uri]: schema }, false);
      } catch (err) {
        this.logger?.error({ uri, err: (err as Error).message }, "stored schema does not compile here");
      }
      const refused = this.onReplaced?.(uri) ?? [];
      this.logger?.error(
        { uri, first_difference: at || "/", refused },
        `schema ${uri} registered here differs from the body the fleet stored first (at ${at || "the root"}); the stored one is used, and the capabilities built on the other are refused`,
      );
      return;
    }
    try {
      this.compileAll({ [uri]: schema }, false);
    } catch (err) {
      this.logger?.warn({ uri, err: (err as Error).message }, "stored schema does not compile here; skipped");
    }
  }

  /**
   * Opens the fleet's schema store (runtime/provider/schema-store.ts): takes every body stored there, then stores the
   * ones this process registered before (its own capabilities). A body registered here that differs from the stored
   * one gives way to it, and `onReplaced` names the URI.
   */
  async attachStore(bus: Bus, replicas: number, logger: Logger): Promise<void> {
    this.logger = logger;
    const own = [...this.sources];
    this.store = await SchemaStore.open(bus, replicas, logger, (uri, schema) => this.adopt(uri, schema));
    for (const [uri, schema] of own) {
      if (this.sources.get(uri) === schema) this.persistLater(uri, schema);
    }
  }

  detachStore(): void {
    this.store?.stop();
    this.store = undefined;
  }

  /** Stores a body registered here without waiting; a conflict found there is the store's watch's to settle. */
  private persistLater(uri: string, schema: JsonObject): void {
    const store = this.store;
    if (!store) return;
    store.create(uri, schema).then(
      (first) => {
        if (first !== undefined) this.adopt(uri, first);
      },
      (err: unknown) =>
        this.logger?.warn({ uri, err: (err as Error).message }, "schema not stored in the fleet's schema store"),
    );
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

function checkShape(uri: unknown, schema: unknown): void {
  if (typeof uri !== "string" || uri.length > MAX_SCHEMA_URI_LENGTH || !URI.test(uri)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `schema uri ${JSON.stringify(String(uri).slice(0, 100))} is not a URI of at most ${MAX_SCHEMA_URI_LENGTH} characters, e.g. schema://team/name/v1`,
      { details: { field: "uri" } },
    );
  }
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
    throw new MigError("MIG_INVALID_REQUEST", `schema ${uri} must be a JSON object`, { details: { uri } });
  }
  const bytes = Buffer.byteLength(JSON.stringify(schema));
  if (bytes > MAX_SCHEMA_BYTES) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `schema ${uri} is ${bytes} bytes of JSON; a schema may hold at most ${MAX_SCHEMA_BYTES}: split it into schemas that refer to each other by $ref`,
      { details: { uri, schema_bytes: bytes, max_schema_bytes: MAX_SCHEMA_BYTES } },
    );
  }
}

/**
 * Refuses what Ajv would take but cannot serve: the compatibility checker's reading of a document (meta-schema, local
 * `$ref`s that point at something, patterns, and no `$ref` loop without a keyword in between, on which validation
 * would never end) applies to every registered schema.
 */
function checkSchema(uri: string, schema: JsonObject): void {
  try {
    compareSchemas(schema, schema, "input", { notes: false });
  } catch (err) {
    if (!(err instanceof MigError)) throw err;
    const reason = err.message.replace(/^.*? is not valid JSON Schema 2020-12: /, "");
    throw new MigError("MIG_INVALID_REQUEST", `schema ${uri} is not valid JSON Schema 2020-12: ${reason}`, {
      details: { uri },
    });
  }
}

function conflict(uri: string, existing: JsonObject, schema: JsonObject): MigError {
  const at = firstDifference(existing, schema) ?? "";
  return new MigError(
    "MIG_INVALID_REQUEST",
    `schema ${uri} is already registered with a different body (first difference at ${at || "the root"}); a schema URI never changes its content: publish the new body under a new URI`,
    { details: { uri, first_difference: at } },
  );
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
