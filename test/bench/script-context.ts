// The BenchContext a standalone benchmark script hands to the server helpers of servers.ts (startRuntime, …) when it
// runs outside the orchestrator: free ports, temporary directories under one root it removes at the end, and the
// node flags of the processes under test.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAllChildrenNow, stopAllChildren } from "./processes.ts";
import type { BenchContext } from "./types.ts";

export async function scriptContext(
  root: string,
  runtimeNodeArgs: string[] = [],
): Promise<BenchContext & { cleanup(): Promise<void> }> {
  const tempRoot = await mkdtemp(join(tmpdir(), "mig-bench-script-"));
  const given = new Set<number>();
  let dirs = 0;
  return {
    root,
    startTimeoutMs: 30_000,
    runtimeNodeArgs,
    tempDir: (prefix) => mkdtemp(join(tempRoot, `${prefix}${dirs++}-`)),
    async freePort() {
      for (;;) {
        const port = await new Promise<number>((resolve, reject) => {
          const server = createServer();
          server.on("error", reject);
          server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
          });
        });
        // A port handed out a moment ago may not be bound yet by the process it went to.
        if (!given.has(port)) {
          given.add(port);
          return port;
        }
      }
    },
    cleanup: () => rm(tempRoot, { recursive: true, force: true }),
  };
}

/**
 * Runs a standalone script's measurement in a context of its own and prints its report (one line with `json`), then
 * exits. Every child process is stopped and the temporary directories removed when it ends, fails, or is
 * interrupted (exit status 130).
 */
export async function runBenchScript(
  root: string,
  runtimeNodeArgs: string[],
  json: boolean,
  measure: (ctx: BenchContext) => Promise<Record<string, unknown>>,
): Promise<never> {
  const ctx = await scriptContext(root, runtimeNodeArgs);
  process.on("exit", killAllChildrenNow);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      void stopAllChildren(2_000)
        .then(() => ctx.cleanup())
        .finally(() => process.exit(130));
    });
  }
  let report: Record<string, unknown>;
  try {
    report = await measure(ctx);
  } finally {
    await stopAllChildren(3_000);
    await ctx.cleanup();
  }
  process.stdout.write(`${json ? JSON.stringify(report) : JSON.stringify(report, null, 2)}\n`);
  process.exit(0);
}
