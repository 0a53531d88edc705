// The executable conformance harness against this runtime: the Core profile over HTTP passes with no failure.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcBinding } from "../bindings/grpc/server.ts";
import { runConformance } from "../conformance/harness.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(() => t?.stop());

describe("conformance harness", () => {
  it("Core profile over HTTP: every check passes", async () => {
    const report = await runConformance({ http: t.http.url, profile: "core", tenant: "acme" });
    const failures = report.results.filter((r) => r.status === "fail").map((r) => `${r.id}: ${r.reason ?? ""}`);
    expect(failures).toEqual([]);
    expect(report.passed).toBeGreaterThanOrEqual(15);
  });

  it("the gRPC checks (the standard's gRPC smoke calls, Control.Cancel, StreamInvoke, replay over Events) pass against the gRPC binding", async () => {
    const grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    try {
      const report = await runConformance({
        grpc: grpc.address,
        profile: "full",
        tenant: "acme",
        only: ["GRPC", "STREAM-1.grpc", "EVENT-4.grpc"],
      });
      expect(report.results.map((r) => `${r.id} ${r.status} ${r.reason ?? ""}`.trim())).toEqual([
        "GRPC-2.grpc.hello pass selected_binding BINDING_TYPE_GRPC",
        "GRPC-2.grpc.discover pass",
        "GRPC-2.grpc.invoke pass",
        "GRPC-2.grpc.error-status pass",
        "GRPC-2.grpc.control-cancel pass accepted false, status not_found",
        "STREAM-1.grpc.stream-invoke pass 2 frames",
        "EVENT-4.grpc.replay-from-cursor pass",
      ]);
    } finally {
      await grpc.close();
    }
  });
});
