// Core profile over HTTP: HELLO, DISCOVER, unary INVOKE, CANCEL, HEARTBEAT and the standard errors.

import { randomUUID } from "node:crypto";
import { brief, ensure, isRecord, SEMVER_PATTERN } from "../assert.ts";
import { type Check, check, convention } from "../check.ts";
import { discoverScoped } from "./core-scopes.ts";
import {
  BASE,
  INFER,
  INFER_BAD_PAYLOAD,
  INFER_PAYLOAD,
  invokePath,
  UNKNOWN_CAPABILITY,
  VALID_MODES,
} from "./fixtures.ts";

const helloNegotiates = check(
  "CORE-1",
  "http",
  "hello-negotiates",
  "core",
  'HELLO offering ["0.1"] selects "0.1" and "http", and names a server_id',
  async (ctx) => {
    const answer = await ctx.post(`${BASE}/hello`, {
      header: ctx.header(),
      supported_versions: ["0.1"],
      requested_bindings: ["http"],
    });
    const body = ctx.expectSuccess(answer, "HelloResponse");
    ensure(body.selected_version === "0.1", `selected_version is ${brief(body.selected_version)}, expected "0.1"`);
    ensure(body.selected_binding === "http", `selected_binding is ${brief(body.selected_binding)}, expected "http"`);
    ensure(typeof body.server_id === "string" && body.server_id !== "", `server_id is ${brief(body.server_id)}`);
    return `server_id ${body.server_id}`;
  },
);

const helloDeterministic = check(
  "CORE-1",
  "http",
  "hello-deterministic",
  "core",
  "HELLO offering several versions selects one of them, the same one every time",
  async (ctx) => {
    const offered = ["0.2", "0.1"];
    const selected: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const answer = await ctx.post(`${BASE}/hello`, {
        header: ctx.header(),
        supported_versions: offered,
        requested_bindings: ["http"],
      });
      selected.push(ctx.expectSuccess(answer, "HelloResponse").selected_version);
    }
    ensure(offered.includes(selected[0] as string), `selected_version ${brief(selected[0])} was not offered`);
    ensure(
      selected.every((v) => v === selected[0]),
      `three identical HELLOs selected ${brief(selected)}`,
    );
    return `selected ${selected[0]}`;
  },
);

const helloVersionMismatch = check(
  "CORE-1",
  "http",
  "hello-version-mismatch",
  "core",
  'HELLO offering only ["9.0"] is refused with MIG_VERSION_MISMATCH',
  async (ctx) => {
    const answer = await ctx.post(`${BASE}/hello`, {
      header: ctx.header(),
      supported_versions: ["9.0"],
      requested_bindings: ["http"],
    });
    ctx.expectError(answer, { codes: ["MIG_VERSION_MISMATCH"] });
  },
);

const headerVersionRefused = check(
  "CORE-6",
  "http",
  "header-version-refused",
  "core",
  'a header with mig_version "9.9" is refused (MIG_INVALID_REQUEST or MIG_VERSION_MISMATCH)',
  async (ctx) => {
    const answer = await ctx.post(`${BASE}/discover`, { header: ctx.header({ mig_version: "9.9" }) });
    const error = ctx.expectError(answer, { codes: ["MIG_INVALID_REQUEST", "MIG_VERSION_MISMATCH"] });
    return String(error.code);
  },
);

const discoverDescriptors = check(
  "CORE-2",
  "http",
  "discover-descriptors",
  "core",
  `DISCOVER lists descriptors with id, semver version, modes and schema URIs, ${INFER} among them`,
  async (ctx) => {
    const answer = await ctx.post(`${BASE}/discover`, { header: ctx.header() });
    const body = ctx.expectSuccess(answer, "DiscoverResponse");
    const capabilities = body.capabilities;
    ensure(Array.isArray(capabilities), `capabilities is ${brief(capabilities)}, expected an array`);
    for (const descriptor of capabilities) {
      ensure(isRecord(descriptor), `descriptor ${brief(descriptor)} is not an object`);
      const id = descriptor.id;
      ensure(typeof id === "string" && id !== "", `descriptor without an id: ${brief(descriptor)}`);
      ensure(
        typeof descriptor.version === "string" && SEMVER_PATTERN.test(descriptor.version),
        `${id}: version ${brief(descriptor.version)} is not semver`,
      );
      const modes = descriptor.modes;
      ensure(Array.isArray(modes) && modes.length > 0, `${id}: modes is ${brief(modes)}, expected a non-empty array`);
      const unknown = modes.filter((mode) => !VALID_MODES.includes(mode as string));
      ensure(unknown.length === 0, `${id}: unknown modes ${brief(unknown)}`);
      for (const key of ["input_schema_uri", "output_schema_uri"]) {
        const uri = descriptor[key];
        ensure(
          typeof uri === "string" && /^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri),
          `${id}: ${key} ${brief(uri)} is not a URI`,
        );
      }
    }
    const infer = capabilities.find((d) => isRecord(d) && d.id === INFER);
    ensure(infer, `${INFER} is not among ${capabilities.length} descriptors`);
    return `${capabilities.length} ${capabilities.length === 1 ? "capability" : "capabilities"}`;
  },
);

const discoverQuery = check(
  "CORE-2",
  "http",
  "discover-query",
  "core",
  `DISCOVER with a query keeps matching ids ("observatory.models" finds ${INFER}) and drops the rest`,
  async (ctx) => {
    const ids = async (query: string): Promise<unknown[]> => {
      const body = ctx.expectSuccess(
        await ctx.post(`${BASE}/discover`, { header: ctx.header(), query }),
        "DiscoverResponse",
      );
      ensure(Array.isArray(body.capabilities), `capabilities is ${brief(body.capabilities)}, expected an array`);
      return body.capabilities.map((d) => (isRecord(d) ? d.id : d));
    };
    const matching = await ids("observatory.models");
    ensure(matching.includes(INFER), `query "observatory.models" returned ${brief(matching)}`);
    const none = await ids(`no-such-capability-${ctx.runId}`);
    ensure(none.length === 0, `a query matching nothing returned ${brief(none)}`);
  },
);

const invokeUnary = check(
  "CORE-3",
  "http",
  "invoke-unary",
  "core",
  `INVOKE ${INFER} with {"input":"health-check"} answers an InvokeResponse for that capability`,
  async (ctx) => {
    const answer = await ctx.post(invokePath(INFER), { header: ctx.header(), payload: INFER_PAYLOAD });
    const body = ctx.expectSuccess(answer, "InvokeResponse");
    ensure(body.capability === INFER, `capability is ${brief(body.capability)}, expected ${INFER}`);
    ensure(isRecord(body.payload), `payload is ${brief(body.payload)}, expected an object`);
    return `payload ${brief(body.payload, 80)}`;
  },
);

const invokeDeadline = check(
  "CORE-3",
  "http",
  "invoke-deadline",
  "core",
  "INVOKE with header.deadline_ms 5000 is accepted and answered",
  async (ctx) => {
    const answer = await ctx.post(invokePath(INFER), {
      header: ctx.header({ deadline_ms: 5000 }),
      payload: INFER_PAYLOAD,
    });
    ctx.expectSuccess(answer, "InvokeResponse");
  },
);

const invokeIdempotent = check(
  "CORE-3",
  "http",
  "invoke-idempotent",
  "core",
  "two INVOKEs with the same idempotency_key answer the same payload",
  async (ctx) => {
    const key = `conformance-${ctx.runId}`;
    const payloads: unknown[] = [];
    for (let i = 0; i < 2; i++) {
      const answer = await ctx.post(invokePath(INFER), {
        header: ctx.header({ idempotency_key: key }),
        payload: INFER_PAYLOAD,
      });
      payloads.push(ctx.expectSuccess(answer, "InvokeResponse").payload);
    }
    ensure(
      JSON.stringify(payloads[0]) === JSON.stringify(payloads[1]),
      `payloads differ: ${brief(payloads[0], 70)} vs ${brief(payloads[1], 70)}`,
    );
  },
);

const invokeUnknown = check(
  "CORE-3",
  "http",
  "invoke-unknown-capability",
  "core",
  "INVOKE of an unknown capability is refused with MIG_UNSUPPORTED_CAPABILITY or MIG_NOT_FOUND",
  async (ctx) => {
    const answer = await ctx.post(invokePath(UNKNOWN_CAPABILITY), { header: ctx.header(), payload: INFER_PAYLOAD });
    const error = ctx.expectError(answer, { codes: ["MIG_UNSUPPORTED_CAPABILITY", "MIG_NOT_FOUND"] });
    return String(error.code);
  },
);

const invokeInvalidPayload = convention(
  `the input schema of ${INFER} (a required string "input") is the reference's default; the standard does not require payloads to be validated against input_schema_uri`,
  check(
    "CORE-3",
    "http",
    "invoke-invalid-payload",
    "core",
    `INVOKE ${INFER} with a payload failing its input schema ({"input":42}) is refused with MIG_INVALID_REQUEST`,
    async (ctx) => {
      const answer = await ctx.post(invokePath(INFER), { header: ctx.header(), payload: INFER_BAD_PAYLOAD });
      ctx.expectError(answer, { codes: ["MIG_INVALID_REQUEST"] });
    },
  ),
);

const malformedJson = check(
  "CORE-5",
  "http",
  "malformed-json",
  "core",
  "a malformed JSON body is answered with a {header, error} envelope, MIG_INVALID_REQUEST",
  async (ctx) => {
    const answer = await ctx.postRaw(invokePath(INFER), '{"header": {"tenant_id": ');
    ctx.expectError(answer, { codes: ["MIG_INVALID_REQUEST"] });
  },
);

const missingTenant = check(
  "CORE-6",
  "http",
  "missing-tenant",
  "core",
  "a request with no tenant anywhere (no X-Tenant-ID, no header.tenant_id, no token) gets an error envelope",
  async (ctx) => {
    const { tenant_id: _omitted, ...header } = ctx.header();
    const answer = await ctx.post(
      invokePath(INFER),
      { header, payload: INFER_PAYLOAD },
      { tenantHeader: false, auth: false, tenantExpected: false },
    );
    const error = ctx.expectError(answer, { codes: ["MIG_INVALID_REQUEST", "MIG_UNAUTHORIZED"] });
    return String(error.code);
  },
);

const cancelAck = check(
  "CORE-4",
  "http",
  "cancel-ack",
  "core",
  "CANCEL of a message id answers a CancelAck naming that id, with accepted and status",
  async (ctx) => {
    const target = randomUUID();
    const answer = await ctx.post(`${BASE}/cancel/${target}`, {
      header: ctx.header(),
      target_message_id: target,
      reason: "conformance check",
    });
    const body = ctx.expectSuccess(answer, "CancelAck");
    ensure(
      body.target_message_id === target,
      `target_message_id is ${brief(body.target_message_id)}, expected ${target}`,
    );
    ensure(typeof body.accepted === "boolean", `accepted is ${brief(body.accepted)}, expected a boolean`);
    ensure(typeof body.status === "string" && body.status !== "", `status is ${brief(body.status)}`);
    return `accepted ${body.accepted}, status ${body.status}`;
  },
);

const heartbeatAck = check(
  "FULL-4",
  "http",
  "heartbeat-ack",
  "core",
  "HEARTBEAT with interval_ms answers a HeartbeatAck with suggested_interval_ms and load_factor",
  async (ctx) => {
    const answer = await ctx.post(`${BASE}/heartbeat`, { header: ctx.header(), interval_ms: 5000 });
    const body = ctx.expectSuccess(answer, "HeartbeatAck");
    const interval = body.suggested_interval_ms;
    ensure(Number.isInteger(interval) && (interval as number) >= 1, `suggested_interval_ms is ${brief(interval)}`);
    ensure(typeof body.load_factor === "number", `load_factor is ${brief(body.load_factor)}, expected a number`);
    return `suggested_interval_ms ${interval}, load_factor ${body.load_factor}`;
  },
);

/** Core checks over HTTP, in run order (scoped DISCOVER lives in core-scopes.ts). The cross-answer checks live in checks/answers.ts. */
export const coreHttpChecks: Check[] = [
  helloNegotiates,
  helloDeterministic,
  helloVersionMismatch,
  headerVersionRefused,
  discoverDescriptors,
  discoverQuery,
  discoverScoped,
  invokeUnary,
  invokeDeadline,
  invokeIdempotent,
  invokeUnknown,
  invokeInvalidPayload,
  malformedJson,
  missingTenant,
  cancelAck,
  heartbeatAck,
];
