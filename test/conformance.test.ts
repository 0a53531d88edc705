// The executable conformance harness against this runtime: the Core profile over HTTP passes with no failure.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
});
