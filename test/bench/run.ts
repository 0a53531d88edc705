// `npm run bench`: measures every row of the benchmark table against its raw baseline in one
// run, prints the table and optionally writes the figures as JSON.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError } from "commander";
import { killAllChildrenNow, stopAllChildren } from "./processes.ts";
import { formatRow } from "./report.ts";
import { runRow } from "./row-runner.ts";
import { rows } from "./rows.ts";
import type { BenchContext, RowResult, RunSettings } from "./types.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const QUICK: RunSettings = { warmupMs: 500, durationMs: 500, settleMs: 100, slices: 4 };
const FULL: RunSettings = { warmupMs: 3_000, durationMs: 2_000, settleMs: 500, slices: 10 };
const START_TIMEOUT_MS = 30_000;

function seconds(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("expected a number of seconds");
  return n;
}

function count(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

const program = new Command()
  .name("bench")
  .description("Benchmark every MIG path against its raw baseline in one run.")
  .option("--quick", "short warm-up and duration, for use while developing (< 2 minutes)")
  .option("--json <file>", "also write the figures as a JSON array, one object per row")
  .option("--only <ids>", "comma-separated row ids (or parts of row names) to run")
  .option("--warmup <seconds>", "override the warm-up per side and concurrency", seconds)
  .option("--duration <seconds>", "override the measured window of each slice", seconds)
  .option("--slices <n>", "override the number of slices per side and concurrency", count)
  .option("--profile <dir>", "run the runtime under test with --cpu-prof, writing profiles to <dir>")
  .option("--list", "list the rows and exit")
  .parse();

const opts = program.opts<{
  quick?: boolean;
  json?: string;
  only?: string;
  warmup?: number;
  duration?: number;
  slices?: number;
  profile?: string;
  list?: boolean;
}>();

if (opts.list) {
  for (const row of rows) {
    const note = row.pending ? "  (pending)" : row.fullRunsOnly ? "  (full runs, or --quick --only)" : "";
    console.log(`${row.id.padEnd(20)} ${row.name}${note}`);
  }
  process.exit(0);
}

const settings: RunSettings = { ...(opts.quick ? { ...QUICK, quick: true } : FULL) };
if (opts.warmup !== undefined) settings.warmupMs = Math.round(opts.warmup * 1000);
if (opts.duration !== undefined) settings.durationMs = Math.max(1, Math.round(opts.duration * 1000));
if (opts.slices !== undefined) settings.slices = opts.slices;

const selected = selectRows(opts.only);

/**
 * `--only` matches a row id exactly or a part of its name, case-insensitively. Without it, a
 * quick run leaves out the rows marked fullRunsOnly.
 */
function selectRows(only: string | undefined) {
  if (!only) {
    if (!opts.quick) return rows;
    const left = rows.filter((r) => r.fullRunsOnly);
    if (left.length > 0) {
      process.stderr.write(`--quick leaves out ${left.map((r) => r.id).join(", ")} (name it in --only to run it)\n`);
    }
    return rows.filter((r) => !r.fullRunsOnly);
  }
  const wanted = only
    .split(",")
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
  for (const w of wanted) {
    if (!rows.some((r) => r.id === w || r.name.toLowerCase().includes(w))) {
      program.error(`--only: no row matches "${w}"; rows are: ${rows.map((r) => r.id).join(", ")}`);
    }
  }
  return rows.filter((r) => wanted.some((w) => r.id === w || r.name.toLowerCase().includes(w)));
}

const tempRoot = await mkdtemp(join(tmpdir(), "mig-bench-"));
const givenPorts = new Set<number>();
let dirCount = 0;

const ctx: BenchContext = {
  root: ROOT,
  startTimeoutMs: START_TIMEOUT_MS,
  runtimeNodeArgs: opts.profile ? ["--cpu-prof", "--cpu-prof-dir", resolve(opts.profile)] : [],
  async tempDir(prefix) {
    return mkdtemp(join(tempRoot, `${prefix}${dirCount++}-`));
  },
  async freePort() {
    for (;;) {
      const port = await new Promise<number>((resolvePort, reject) => {
        const server = createServer();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
          const address = server.address();
          server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
        });
      });
      if (!givenPorts.has(port)) {
        givenPorts.add(port);
        return port;
      }
    }
  },
};

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren(3_000);
    await rm(tempRoot, { recursive: true, force: true });
  })();
  return cleaning;
}

let interrupted: string | undefined;
process.on("exit", killAllChildrenNow);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = sig;
    process.stderr.write(`\n${sig}: stopping child processes\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const log = (text: string) => process.stderr.write(`${text}\n`);
const results: RowResult[] = [];
const started = Date.now();
try {
  log(
    `mig bench: per side and concurrency ${settings.warmupMs / 1000} s warm-up, then ` +
      `${settings.slices} alternating slices of ${settings.durationMs / 1000} s; ` +
      `${availableParallelism()} cores, node ${process.version}`,
  );
  for (const row of selected) {
    if (interrupted) break;
    if (row.pending) {
      results.push(await runRow(row, ctx, settings, log));
      continue;
    }
    log(`${row.name} [${row.id}]`);
    const rowStarted = Date.now();
    results.push(await runRow(row, ctx, settings, log));
    log(`  done in ${((Date.now() - rowStarted) / 1000).toFixed(0)} s`);
  }
} catch (err) {
  if (!interrupted) throw err; // once interrupted, failures are the children we stopped
} finally {
  await cleanup();
}
if (interrupted) process.exit(130);

console.log("");
console.log(results.map(formatRow).join("\n\n"));
console.log(`\n${results.length} rows in ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (opts.json) {
  await writeFile(opts.json, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`figures written to ${opts.json}`);
}
