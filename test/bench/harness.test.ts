// Checks the benchmark harness itself (histogram, loader, row runner); no timing is asserted.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callsOfRun, cpuPerCall, medianPerKey } from "./cpu.ts";
import { Histogram } from "./histogram.ts";
import { aggregate, LoaderProcess } from "./measure.ts";
import { alternate, median, pairedMedianRatio } from "./paired.ts";
import { runRow } from "./row-runner.ts";
import { measureScale, sample } from "./scale.ts";
import { runScript } from "./script-rows.ts";
import { bareGrpc } from "./servers.ts";
import type { BenchContext, LoadResult, RowDefinition } from "./types.ts";

const root = resolve(fileURLToPath(import.meta.url), "../../..");
// These tests are of the Node loaders: wrk, when it is installed, stands in for load-http.ts in the bench rows.
process.env.MIG_BENCH_HTTP_LOADER = "node";

describe("histogram", () => {
  it("reports percentiles within 1% of the exact value", () => {
    const h = new Histogram();
    for (let i = 1; i <= 100_000; i++) h.recordMs(i / 1000); // 1 µs … 100 ms
    expect(h.count).toBe(100_000);
    expect(Math.abs(h.percentileMs(50) - 50) / 50).toBeLessThan(0.01);
    expect(Math.abs(h.percentileMs(99) - 99) / 99).toBeLessThan(0.01);
    expect(Math.abs(h.percentileMs(99.9) - 99.9) / 99.9).toBeLessThan(0.01);
    expect(h.maxMs()).toBe(100);
  });

  it("merges slices into the same figures as one run", () => {
    const whole = new Histogram();
    const first = new Histogram();
    const second = new Histogram();
    for (let i = 0; i < 10_000; i++) {
      const ms = (i % 997) / 10;
      whole.recordMs(ms);
      (i % 2 === 0 ? first : second).recordMs(ms);
    }
    const merged = new Histogram();
    merged.add(first.toJSON());
    merged.add(second.toJSON());
    expect(merged.latencies()).toEqual(whole.latencies());
  });
});

describe("load-http", () => {
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const ok = req.url === "/ok";
        res.writeHead(ok ? 200 : 404, { "content-type": "application/json" });
        res.end(ok ? '{"payload":{}}' : '{"error":{"code":"MIG_NOT_FOUND"}}');
      });
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((done) => server.close(() => done())));

  it("counts answered requests, slice by slice, and merges the slices", async () => {
    const loader = await LoaderProcess.start(root, { kind: "http", url: `${base}/ok`, body: "{}" }, 4);
    try {
      const first = await loader.run(50, 200);
      const second = await loader.run(0, 200);
      for (const slice of [first, second]) {
        expect(slice.errors).toBe(0);
        expect(slice.requests).toBeGreaterThan(0);
      }
      expect(first.connections_opened).toBe(4); // the second slice reuses the same four
      expect(second.connections_opened).toBe(0);
      const m = aggregate(4, [first, second]);
      expect(m.requests).toBe(first.requests + second.requests);
      expect(m.slices).toBe(2);
    } finally {
      await loader.close();
    }
  });

  it("refuses to measure a path whose probe answers an error", async () => {
    const target = { kind: "http" as const, url: `${base}/missing`, body: "{}" };
    await expect(LoaderProcess.start(root, target, 1)).rejects.toThrow(/^load-http: probe: HTTP 404/);
  });
});

describe("load-grpc", () => {
  it("measures unary Invoke against the bare grpc-js echo service", async () => {
    const ctx = { root, startTimeoutMs: 20_000, runtimeNodeArgs: [] } as unknown as BenchContext;
    const body = JSON.stringify({
      header: { tenant_id: "bench" },
      capability: "bench.echo",
      payload: { input: "hello" },
    });
    const server = await bareGrpc(body).start(ctx);
    try {
      const loader = await LoaderProcess.start(root, server.target, 2);
      try {
        const slice = await loader.run(50, 200);
        expect(slice.tool).toBe("grpc");
        expect(slice.errors).toBe(0);
        expect(slice.requests).toBeGreaterThan(0);
      } finally {
        await loader.close();
      }
    } finally {
      await server.stop();
    }
  }, 30_000);
});

describe("script rows", () => {
  const dir = mkdtempSync(resolve(tmpdir(), "mig-bench-script-"));
  const ctx = { root, startTimeoutMs: 1_000, runtimeNodeArgs: [] } as unknown as BenchContext;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the last JSON line a script prints", async () => {
    const file = resolve(dir, "ok.ts");
    writeFileSync(
      file,
      'console.log("progress");\nconsole.log(JSON.stringify({ a: 1 }));\nconsole.log(JSON.stringify({ a: 2 }));\n',
    );
    await expect(runScript(ctx, "ok", file, [], 20_000)).resolves.toEqual({ a: 2 });
  }, 30_000);

  it("fails with the script's output when it exits non-zero", async () => {
    const file = resolve(dir, "bad.ts");
    writeFileSync(
      file,
      'console.log(JSON.stringify({ a: 1 }));\nconsole.error("Error: it broke");\nprocess.exit(3);\n',
    );
    await expect(runScript(ctx, "bad", file, [], 20_000)).rejects.toThrow(/exited with code 3/);
  }, 30_000);
});

describe("row runner", () => {
  const ctx: BenchContext = {
    root,
    startTimeoutMs: 1_000,
    runtimeNodeArgs: [],
    tempDir: () => Promise.reject(new Error("not used")),
    freePort: () => Promise.reject(new Error("not used")),
  };
  const settings = { warmupMs: 0, durationMs: 1, settleMs: 0, slices: 1 };

  it("reports a server that fails to start in its row", async () => {
    const row: RowDefinition = {
      id: "broken",
      name: "broken",
      measures: "nothing",
      path: { label: "broken server", start: () => Promise.reject(new Error("no such binary")) },
    };
    const result = await runRow(row, ctx, settings, () => {});
    expect(result.status).toBe("error");
    expect(result.path?.error).toBe("could not start: no such binary");
    expect(result.path?.results).toEqual([]);
  });

  it("measures a pair in alternating slices and reports the ratio", async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end('{"payload":{}}'));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const spec = {
      label: "in-test server",
      start: async () => ({ target: { kind: "http" as const, url, body: "{}" }, stop: async () => {} }),
    };
    const row: RowDefinition = {
      id: "pair",
      name: "pair",
      measures: "x",
      path: spec,
      baseline: spec,
      concurrency: [1],
    };
    try {
      const result = await runRow(row, ctx, { warmupMs: 50, durationMs: 100, settleMs: 0, slices: 2 }, () => {});
      expect(result.status).toBe("ok");
      for (const side of [result.path!, result.baseline!]) {
        expect(side.results).toHaveLength(1);
        expect(side.results[0]).toMatchObject({ concurrency: 1, slices: 2, errors: 0 });
        // The server here names no processes: only the loader's CPU is counted.
        expect(Object.keys(side.results[0]!.cpu_us_per_call!)).toEqual(["client"]);
        expect(side.results[0]!.cpu_us_per_call!.client).toBeGreaterThanOrEqual(0);
      }
      expect(result.ratio?.throughput["1"]).toBeGreaterThan(0);
      expect(result.ratio?.p50_at_1).toBeGreaterThan(0);
    } finally {
      await new Promise<void>((done) => server.close(() => done()));
    }
  });

  it("lists a pending row without running anything", async () => {
    const row: RowDefinition = { id: "later", name: "later", measures: "x", pending: "not built" };
    const result = await runRow(row, ctx, settings, () => {});
    expect(result).toMatchObject({ status: "pending", error: "not built" });
  });
});

describe("CPU per call", () => {
  it("divides each process's CPU by the calls, leaves out what could not be read, and takes medians per process", () => {
    expect(cpuPerCall({ worker: 1_000, gone: Number.NaN }, { worker: 3_000, gone: Number.NaN }, 100)).toEqual({
      worker: 20,
    });
    expect(cpuPerCall({ worker: 1_000 }, { worker: 3_000 }, 0)).toEqual({});
    expect(medianPerKey([{ worker: 20, client: 5 }, { worker: 30 }, { worker: 10, client: 7 }])).toEqual({
      cpu_us_per_call: { worker: 20, client: 6 },
    });
    expect(medianPerKey([{}, {}])).toEqual({});
  });

  it("counts a run's lead-in calls as the loader counted them, or at the measured window's rate when it did not", () => {
    const run = { requests: 1_000 } as LoadResult;
    // wrk's lead-in runs a whole second however short the lead-in asked: its own count, not the estimate.
    expect(callsOfRun({ ...run, lead_in_requests: 2_000 }, 100, 500)).toBe(3_000);
    expect(callsOfRun(run, 100, 500)).toBe(1_200);
  });
});

describe("paired ratio", () => {
  it("divides each path slice by its neighbouring baseline slice and takes the median, skipping pairs with nothing measured", () => {
    // One baseline slice run fast (a burst on the baseline's side) moves one pair, not the answer.
    expect(pairedMedianRatio([60, 70, 65, 66, 64], [100, 100, 200, 100, 100])).toBe(0.64);
    expect(pairedMedianRatio([60, 70, 65, 66], [100, 100, 200, 100])).toBe(0.63);
    expect(pairedMedianRatio([60, 0, 70], [100, 100, 100])).toBe(0.65);
    expect(pairedMedianRatio([60, 70, 80], [100, 100])).toBe(0.65);
    expect(pairedMedianRatio([0], [100])).toBeNull();
    expect(pairedMedianRatio(undefined, [100])).toBeNull();
    expect(median([])).toBeNaN();
  });

  it("runs rounds in the order a, b, b, a, a, b, …", async () => {
    const order: string[] = [];
    const sides = await alternate(
      3,
      async () => (order.push("a"), order.length),
      async () => (order.push("b"), order.length),
    );
    expect(order).toEqual(["a", "b", "b", "a", "a", "b"]);
    expect(sides).toEqual({ a: [1, 4, 5], b: [2, 3, 6] });
  });
});

describe("row table", () => {
  it("gives every row something to run: a custom measurement, a path or a baseline, or a pending note", async () => {
    const { rows } = await import("./rows.ts");
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    for (const row of rows) {
      const kinds = [
        row.custom !== undefined,
        row.path !== undefined || row.baseline !== undefined,
        row.pending !== undefined,
      ];
      expect(kinds.filter(Boolean), row.id).toHaveLength(1);
    }
    expect(rows.find((r) => r.id === "scale")).toMatchObject({ fullRunsOnly: true });
    expect(rows.find((r) => r.id === "scale")?.custom).toBeTypeOf("function");
  });
});

describe("scale row", () => {
  it("reads a Prometheus series summed over its label sets", () => {
    const text =
      '# HELP x\nmig_subscriptions_active{binding="http"} 3\nmig_subscriptions_active{binding="nats"} 2\nmig_streams_active 7\n';
    expect(sample(text, "mig_subscriptions_active")).toBe(5);
    expect(sample(text, "mig_streams_active")).toBe(7);
    expect(sample(text, "mig_absent")).toBeNaN();
  });

  it("holds subscriptions and streams against a real runtime, counted by the runtime, and lets them go", async () => {
    const dir = mkdtempSync(resolve(tmpdir(), "mig-bench-scale-"));
    let made = 0;
    const ctx: BenchContext = {
      root,
      startTimeoutMs: 30_000,
      runtimeNodeArgs: [],
      tempDir: async (prefix) => mkdtempSync(resolve(dir, `${prefix}${made++}-`)),
      freePort: () =>
        new Promise((done) => {
          const s = http.createServer().listen(0, "127.0.0.1", () => {
            const { port } = s.address() as AddressInfo;
            s.close(() => done(port));
          });
        }),
    };
    try {
      // measureScale itself checks that the runtime's gauges reach 30 and return to 0, and that the
      // holder lost none while they were held; a failure of any of these rejects.
      const figures = await measureScale(ctx, { warmupMs: 50, durationMs: 100, settleMs: 0, slices: 1 }, () => {}, 30);
      expect(figures.population).toBe(30);
      for (const key of [
        "rss_mib_without",
        "rss_mib_subscriptions",
        "rss_mib_streams",
        "heap_used_mib_subscriptions",
        "p50_ms_without",
        "p50_ms_streams",
      ]) {
        expect(figures[key], key).toBeGreaterThan(0);
      }
      expect(String(figures.held)).toContain("30 each instead of 10,000");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
