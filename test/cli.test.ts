// `mig start` as a real process: one log line per listener, serves the README's calls, stops cleanly on SIGTERM.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type MigProcess, startMig } from "./helpers/process.ts";

let mig: MigProcess | undefined;
afterAll(() => mig?.stop("SIGKILL"));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("mig start", () => {
  it("starts the embedded bus and the HTTP binding, serves hello/discover/invoke, and stops the bus on SIGTERM", async () => {
    mig = startMig(["start"]);
    const bus = await mig.waitForLog("embedded nats-server listening");
    const http = await mig.waitForLog("HTTP binding listening");
    expect(String(bus.url)).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    await mig.waitForLog("auth mode none");
    const base = String(http.url);

    const post = async (path: string, body: unknown) => {
      const res = await fetch(base + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    expect(
      (await post("/mig/v0.1/hello", { header: { tenant_id: "acme" }, supported_versions: ["0.1"] })).body
        .selected_version,
    ).toBe("0.1");
    expect(
      (await post("/mig/v0.1/discover", { header: { tenant_id: "acme" } })).body.capabilities.length,
    ).toBeGreaterThan(0);
    const invoked = await post("/mig/v0.1/invoke/observatory.models.infer", {
      header: { tenant_id: "acme" },
      payload: { input: "hello" },
    });
    expect(invoked.status).toBe(200);

    const natsPid = natsServerPid(mig.dataDir);
    expect(natsPid).toBeGreaterThan(0);
    expect(alive(natsPid)).toBe(true);
    expect(await mig.stop("SIGTERM")).toBe(0);
    expect(alive(natsPid)).toBe(false);
  });

  it("refuses a bad setting with one clear sentence", async () => {
    const bad = startMig(["start", "--auth-mode", "magic"]);
    expect(await bad.exited).toBe(1);
    expect(bad.stderr().trim()).toBe('mig start: MIG_AUTH_MODE must be "none" or "jwt", got "magic"');
  });
});

/** The embedded server's pid, from the ports file nats-server writes into the data directory. */
function natsServerPid(dataDir: string): number {
  const file = readdirSync(join(dataDir, "ports")).find((f) => /^nats-server_\d+\.ports$/.test(f));
  return file ? Number(/_(\d+)\./.exec(file)![1]) : 0;
}
