// What a provider hands back, checked before any binding sees it: an output JSON can carry and its schema accepts,
// and a failure turned into a MigError the caller may read. Shared by unary invocations and streams.
import { MigError } from "../../schemas/errors.ts";
import type { Logger } from "../base/logger.ts";
import type { RegisteredCapability } from "./registry.ts";
import type { SchemaRegistry } from "./schema-registry.ts";

/** What the checks read of the runtime. */
export interface OutputChecks {
  config: { maxJsonDepth: number };
  logger: Logger;
  schemas: SchemaRegistry;
}

export function checkOutput(core: OutputChecks, entry: RegisteredCapability, value: unknown): MigError | undefined {
  const { id, output_schema_uri } = entry.descriptor;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    const got = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
    return new MigError("MIG_INTERNAL", `capability ${id} returned ${got} instead of a JSON object`);
  }
  const unsendable = unsendableReason(value, core.config.maxJsonDepth);
  if (unsendable !== undefined) {
    core.logger.warn({ capability: id, reason: unsendable }, "capability returned an output that cannot be serialized");
    return new MigError("MIG_INTERNAL", `capability ${id} returned an output that cannot be sent: ${unsendable}`, {
      retryable: false,
    });
  }
  const problems = core.schemas.check(output_schema_uri, value);
  if (problems) {
    return new MigError("MIG_INTERNAL", `capability ${id} returned output that does not match ${output_schema_uri}`, {
      details: { schema_uri: output_schema_uri, errors: problems },
    });
  }
  return undefined;
}

/**
 * Why an output could not go on the wire, checked when the provider returns it: every binding serializes the answer
 * (and the idempotency store its record) only after the invocation settled, where a throw could no longer become
 * the caller's error. One bounded walk, no trial serialization (outputs may be large): too deep (JSON.stringify
 * itself would overflow the stack on it), a cycle, or a BigInt, which JSON.stringify refuses.
 */
function unsendableReason(value: object, maxDepth: number): string | undefined {
  const problem = shapeProblem(value, maxDepth, 0);
  if (problem === "bigint") return "it holds a BigInt, which JSON cannot carry";
  if (problem === "deep") {
    return refersToItself(value, new Set(), maxDepth + 1)
      ? "it refers to itself (a circular structure)"
      : `it nests objects or arrays deeper than ${maxDepth} levels`;
  }
  return undefined;
}

/** The first thing in `value` JSON cannot carry: nesting past `limit` (a cycle too), or a BigInt. */
function shapeProblem(value: unknown, limit: number, depth: number): "deep" | "bigint" | undefined {
  if (typeof value === "bigint") return "bigint";
  if (value === null || typeof value !== "object") return undefined;
  if (depth >= limit) return "deep";
  for (const child of Array.isArray(value) ? value : Object.values(value)) {
    const problem = shapeProblem(child, limit, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** Whether `value` contains itself within `levels` levels (only asked of an output already found too deep). */
function refersToItself(value: object, ancestors: Set<object>, levels: number): boolean {
  if (ancestors.has(value)) return true;
  if (levels === 0) return false;
  ancestors.add(value);
  for (const child of Object.values(value)) {
    if (child !== null && typeof child === "object" && refersToItself(child, ancestors, levels - 1)) return true;
  }
  ancestors.delete(value);
  return false;
}

export function providerError(
  core: Pick<OutputChecks, "logger">,
  capability: string,
  messageId: string,
  err: unknown,
): MigError {
  if (err instanceof MigError) return err;
  // The provider's own message may hold internals: it goes to the log, the caller gets the message id.
  core.logger.warn(
    { capability, message_id: messageId, err: err instanceof Error ? err.message : String(err) },
    "provider failed",
  );
  return new MigError(
    "MIG_INTERNAL",
    `capability ${capability} failed inside its provider (message_id ${messageId}); the runtime log has the cause`,
  );
}
