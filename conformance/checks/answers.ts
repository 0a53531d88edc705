// Checks across every answer of the run: the envelope schemas are loaded, errors follow the error model (and the reference's status table), headers are complete.

import {
  brief,
  ensure,
  HTTP_STATUS_BY_CODE,
  isMigErrorCode,
  isRecord,
  type MigErrorCode,
  RFC3339_PATTERN,
  skip,
  UUID_PATTERN,
} from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import type { Exchange } from "../context.ts";

/** Runs first: without the schemas, every other check still runs but bodies are not schema-checked. */
export const envelopeSchemas = check(
  "CORE-6",
  "any",
  "envelope-schemas",
  "core",
  "the standard's envelope JSON Schemas load (schemas/envelopes.ts), so every body below is schema-checked",
  async (ctx) => {
    ensure(
      ctx.validator,
      `cannot load schemas/envelopes.ts (${ctx.validatorError ?? "unknown error"}); bodies are not schema-checked`,
    );
    const probe = ctx.validator("ErrorEnvelope", { header: {}, error: {} });
    ensure(!probe.ok, "validateEnvelope accepted an empty ErrorEnvelope; the schemas are not enforced");
  },
);

const errorModel = check(
  "CORE-5",
  "http",
  "error-model",
  "core",
  "every HTTP answer >= 400 in this run was a {header, error} envelope with a standard code, a message, retryable and details an object if present",
  async (ctx) => {
    const answers = ctx.exchanges.filter((e) => e.binding === "http" && e.status !== undefined && e.status >= 400);
    if (answers.length === 0) skip("no error answers were recorded in this run");
    const problems: string[] = [];
    for (const answer of answers) {
      const problem = errorProblem(answer);
      if (problem) problems.push(`${answer.checkId} ${answer.op}: ${problem}`);
    }
    ensure(
      problems.length === 0,
      `${problems.length} of ${answers.length} error answers: ${problems.slice(0, 3).join(" | ")}`,
    );
    return `${answers.length} error answers`;
  },
);

const statusTable = convention(
  "the standard's OpenAPI answers errors with 4XX or 5XX; the status per code is the reference gateway's table",
  check(
    "CORE-5",
    "http",
    "status-table",
    "core",
    "every HTTP error answer of this run has the reference's status for its code (MIG_INVALID_REQUEST 400, MIG_NOT_FOUND 404, MIG_TIMEOUT 504, …)",
    async (ctx) => {
      const answers = ctx.exchanges.filter((e) => e.binding === "http" && e.status !== undefined && e.status >= 400);
      const coded = answers.filter(
        (e) => isRecord(e.body) && isRecord(e.body.error) && isMigErrorCode(e.body.error.code),
      );
      if (coded.length === 0) skip("no error answers with a standard code were recorded in this run");
      const problems: string[] = [];
      for (const answer of coded) {
        const code = ((answer.body as Record<string, unknown>).error as { code: MigErrorCode }).code;
        if (!HTTP_STATUS_BY_CODE[code].includes(answer.status as number)) {
          problems.push(
            `${answer.checkId} ${answer.op}: ${code} came with HTTP ${answer.status}, the table says ${HTTP_STATUS_BY_CODE[code].join(" or ")}`,
          );
        }
      }
      ensure(
        problems.length === 0,
        `${problems.length} of ${coded.length} error answers: ${problems.slice(0, 3).join(" | ")}`,
      );
      return `${coded.length} error answers`;
    },
  ),
);

const headerEverywhere = check(
  "CORE-6",
  "any",
  "header-on-every-answer",
  "core",
  'every JSON body the endpoint sent in this run carried a header with mig_version "0.1", a UUID message_id, an RFC 3339 timestamp and the tenant',
  async (ctx) => {
    const bodies = ctx.exchanges.filter((e) => isRecord(e.body));
    if (bodies.length === 0) skip("no JSON bodies were recorded in this run");
    const problems: string[] = [];
    for (const exchange of bodies) {
      const problem = headerProblem(exchange, ctx.tenant);
      if (problem) problems.push(`${exchange.checkId} ${exchange.op}: ${problem}`);
    }
    ensure(problems.length === 0, `${problems.length} of ${bodies.length} bodies: ${problems.slice(0, 3).join(" | ")}`);
    return `${bodies.length} bodies`;
  },
);

function errorProblem(answer: Exchange): string | undefined {
  const body = answer.body;
  if (!isRecord(body) || !isRecord(body.header) || !isRecord(body.error)) {
    return `HTTP ${answer.status} ${answer.contentType || ""} is not a {header, error} envelope: ${brief(answer.text, 60)}`;
  }
  const { code, message, retryable, details } = body.error;
  if (!isMigErrorCode(code)) return `code ${brief(code)} is not a standard MIG code`;
  if (typeof message !== "string") return `message is ${brief(message)}`;
  if (typeof retryable !== "boolean") return `retryable is ${brief(retryable)}`;
  if (details !== undefined && details !== null && !isRecord(details)) return `details is ${brief(details)}`;
  return undefined;
}

function headerProblem(exchange: Exchange, tenant: string): string | undefined {
  const header = (exchange.body as Record<string, unknown>).header;
  if (!isRecord(header)) return "no header object";
  if (header.mig_version !== "0.1") return `mig_version is ${brief(header.mig_version)}`;
  if (typeof header.message_id !== "string" || !UUID_PATTERN.test(header.message_id)) {
    return `message_id ${brief(header.message_id)} is not a UUID`;
  }
  if (
    typeof header.timestamp !== "string" ||
    !RFC3339_PATTERN.test(header.timestamp) ||
    Number.isNaN(Date.parse(header.timestamp))
  ) {
    return `timestamp ${brief(header.timestamp)} is not RFC 3339`;
  }
  if (exchange.tenantExpected && header.tenant_id !== tenant)
    return `tenant_id is ${brief(header.tenant_id)}, expected ${tenant}`;
  return undefined;
}

/** Run after every other check, so they see all answers. */
export const answerChecks: Check[] = [errorModel, statusTable, headerEverywhere];
