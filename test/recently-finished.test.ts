// The memory of finished message ids behind CANCEL's "already_completed": bounded, newest kept, oldest forgotten.
import { describe, expect, it } from "vitest";
import { RecentlyFinished } from "../runtime/flow/inflight.ts";

describe("RecentlyFinished", () => {
  it("remembers at least the newest `limit` ids with their tenant, and forgets the oldest as more come", () => {
    const finished = new RecentlyFinished(100);
    for (let i = 0; i < 1000; i++) {
      finished.add(`m-${i}`, `t-${i % 3}`);
      // The newest 100 are always there, whatever the position in a generation.
      for (const back of [0, 1, 50, 99]) {
        if (i - back >= 0) expect(finished.tenantOf(`m-${i - back}`)).toBe(`t-${(i - back) % 3}`);
      }
    }
    // At most twice the limit is kept: the first ids are long gone.
    expect(finished.tenantOf("m-0")).toBeUndefined();
    expect(finished.tenantOf("m-799")).toBeUndefined();
    expect(finished.tenantOf("m-unknown")).toBeUndefined();
  });

  it("an id finished again is remembered with its latest tenant", () => {
    const finished = new RecentlyFinished(2);
    finished.add("m-1", "acme");
    finished.add("m-2", "acme");
    finished.add("m-1", "globex");
    expect(finished.tenantOf("m-1")).toBe("globex");
  });
});
