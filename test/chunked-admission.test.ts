// Requests start a chunk per turn of the event loop, in order, each later chunk after the answers so far are handed
// on; a flood past the waiting bound starts at once. The same over a real NATS binding, a burst of 200 requests:
// test/nats-binding.test.ts.
import { describe, expect, it } from "vitest";
import { ChunkedAdmission } from "../runtime/bus/chunked-admission.ts";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("ChunkedAdmission", () => {
  it("starts at most a chunk per turn, in order, calling beforeChunk before each later chunk", async () => {
    const events: string[] = [];
    const admission = new ChunkedAdmission<number>(
      4,
      1_000,
      (n) => events.push(`start ${n}`),
      () => events.push("flush"),
    );
    for (let n = 0; n < 10; n++) admission.admit(n);
    expect(events).toEqual(["start 0", "start 1", "start 2", "start 3"]);
    await admission.whenEmpty();
    expect(events).toEqual([
      "start 0",
      "start 1",
      "start 2",
      "start 3",
      "flush",
      "start 4",
      "start 5",
      "start 6",
      "start 7",
      "flush",
      "start 8",
      "start 9",
    ]);
  });

  it("gives a new turn a whole chunk again", async () => {
    const started: number[] = [];
    const admission = new ChunkedAdmission<number>(
      3,
      1_000,
      (n) => started.push(n),
      () => undefined,
    );
    for (let n = 0; n < 3; n++) admission.admit(n);
    admission.admit(3); // this turn's chunk is used up: waits
    expect(started).toEqual([0, 1, 2]);
    await nextTurn();
    expect(started).toEqual([0, 1, 2, 3]);
    await nextTurn();
    await nextTurn();
    for (let n = 4; n < 7; n++) admission.admit(n);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("starts everything waiting, in order, once more than maxWaiting wait", async () => {
    const started: number[] = [];
    const admission = new ChunkedAdmission<number>(
      2,
      5,
      (n) => started.push(n),
      () => undefined,
    );
    for (let n = 0; n < 7; n++) admission.admit(n); // 0 and 1 start, 2..6 wait: five
    expect(started).toEqual([0, 1]);
    admission.admit(7); // the sixth waiting: all start, then it
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    admission.admit(8); // the turn's chunk is still used up: waits for the next turn
    expect(started).toHaveLength(8);
    await admission.whenEmpty();
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("whenEmpty resolves at once when nothing waits", async () => {
    const admission = new ChunkedAdmission<number>(
      2,
      10,
      () => undefined,
      () => undefined,
    );
    await expect(admission.whenEmpty()).resolves.toBeUndefined();
  });
});
