// Checks over the gRPC binding: the standard's own gRPC smoke calls (Hello, Discover, Invoke) and the status of an error.

import { status } from "@grpc/grpc-js";
import { brief, ensure, fail } from "../assert.ts";
import { check, type Check } from "../check.ts";
import type { CheckContext } from "../context.ts";
import type { GrpcAnswer } from "../grpc-client.ts";
import { stringStruct } from "../grpc-client.ts";
import { INFER, INFER_PAYLOAD, UNKNOWN_CAPABILITY } from "./fixtures.ts";

function header(ctx: CheckContext): Record<string, unknown> {
  return { tenant_id: ctx.tenant, mig_version: "0.1" };
}

function expectOk(answer: GrpcAnswer): Record<string, unknown> {
  if (!answer.ok) fail(`${answer.method} failed: ${status[answer.error.code] ?? answer.error.code} ${brief(answer.error.details)}`);
  return answer.value;
}

const hello = check(
  "GRPC-2", "grpc", "hello", "core",
  'Discovery.Hello offering "0.1" and BINDING_TYPE_GRPC selects version "0.1"',
  async (ctx) => {
    const answer = await ctx.grpc.call("Discovery", "Hello", {
      header: header(ctx),
      supported_versions: ["0.1"],
      requested_bindings: ["BINDING_TYPE_GRPC"],
    });
    const body = expectOk(answer);
    ensure(body.selected_version === "0.1", `selected_version is ${brief(body.selected_version)}, expected "0.1"`);
    return `selected_binding ${String(body.selected_binding)}`;
  },
);

const discover = check(
  "GRPC-2", "grpc", "discover", "core",
  "Discovery.Discover lists at least one capability",
  async (ctx) => {
    const body = expectOk(await ctx.grpc.call("Discovery", "Discover", { header: header(ctx) }));
    ensure(Array.isArray(body.capabilities) && body.capabilities.length > 0, `capabilities is ${brief(body.capabilities)}`);
  },
);

const invoke = check(
  "GRPC-2", "grpc", "invoke", "core",
  `Invocation.Invoke ${INFER} with {"input":"health-check"} answers with a capability`,
  async (ctx) => {
    const body = expectOk(
      await ctx.grpc.call("Invocation", "Invoke", { header: header(ctx), capability: INFER, payload: stringStruct(INFER_PAYLOAD) }),
    );
    ensure(typeof body.capability === "string" && body.capability !== "", `capability is ${brief(body.capability)}`);
  },
);

const invokeUnknown = check(
  "GRPC-2", "grpc", "error-status", "core",
  'Invoke of an unknown capability ends with NOT_FOUND and the message "MIG_UNSUPPORTED_CAPABILITY: …" (or MIG_NOT_FOUND)',
  async (ctx) => {
    const answer = await ctx.grpc.call("Invocation", "Invoke", { header: header(ctx), capability: UNKNOWN_CAPABILITY, payload: stringStruct({}) });
    if (answer.ok) fail(`${answer.method} of ${UNKNOWN_CAPABILITY} answered ${brief(answer.value)}`);
    ensure(answer.error.code === status.NOT_FOUND, `status is ${status[answer.error.code] ?? answer.error.code}, expected NOT_FOUND`);
    ensure(
      /^MIG_(UNSUPPORTED_CAPABILITY|NOT_FOUND): /.test(answer.error.details),
      `status message is ${brief(answer.error.details)}; expected "<CODE>: <message>"`,
    );
  },
);

export const coreGrpcChecks: readonly Check[] = [hello, discover, invoke, invokeUnknown];
