// Starts a nats-server for a benchmark baseline: 127.0.0.1, a port the server picks itself
// (read back from its ports file), JetStream on, storage in a temp directory.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Child, sleep } from "./processes.ts";
import type { BenchContext } from "./types.ts";

export interface NatsServer {
  /** e.g. "127.0.0.1:43121" */
  url: string;
  child: Child;
}

export async function startNatsServer(ctx: BenchContext): Promise<NatsServer> {
  const dir = await ctx.tempDir("nats-");
  const bin = process.env.NATS_SERVER_BIN || "nats-server";
  const child = new Child(
    "nats-server",
    bin,
    ["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", dir, "--ports_file_dir", dir],
    { cwd: dir },
  );
  const deadline = Date.now() + ctx.startTimeoutMs;
  while (Date.now() < deadline) {
    if (!child.running) throw new Error(child.failure());
    const url = await readClientUrl(dir);
    if (url) return { url, child };
    await sleep(50);
  }
  await child.stop();
  throw new Error(`nats-server wrote no ports file within ${ctx.startTimeoutMs} ms: ${child.tail()}`);
}

/** The client address from `nats-server_<pid>.ports`, once the server has written it. */
async function readClientUrl(dir: string): Promise<string | undefined> {
  const name = (await readdir(dir)).find((entry) => entry.endsWith(".ports"));
  if (!name) return undefined;
  try {
    const ports = JSON.parse(await readFile(join(dir, name), "utf8")) as { nats?: string[] };
    const first = ports.nats?.[0];
    return first ? first.replace(/^nats:\/\//, "") : undefined;
  } catch {
    return undefined; // still being written
  }
}
