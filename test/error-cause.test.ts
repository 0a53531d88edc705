// details.cause of a bus failure tells the caller what failed without the server's file paths; the log keeps the whole error.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpBinding, startHttpBinding } from "../bindings/http/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { topicRef } from "../runtime/store/events.ts";
import { publicCause } from "../schemas/errors.ts";
import { expectError } from "./helpers/envelopes.ts";

const logLines: Record<string, unknown>[] = [];
let dataDir: string;
let runtime: MigRuntime;
let http: HttpBinding;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "mig-cause-"));
  const config = loadConfig(
    { natsPort: 0, natsMonitorPort: 0, dataDir, httpAddr: "127.0.0.1:0", logLevel: "warn" },
    {},
  );
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  runtime = await MigRuntime.start(config, { logger: pino({ level: "warn" }, sink) });
  http = await startHttpBinding(runtime, runtime.authenticator, config.httpAddr);
});
afterAll(async () => {
  await http?.close();
  await runtime?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("details.cause", () => {
  it("a PUBLISH that JetStream cannot store (its message block cannot be opened) names the failure, not the store's files", async () => {
    // A disk fault in miniature: where the topic's first message block file goes, there is a directory.
    const ref = topicRef("acme", "disk.fault");
    mkdirSync(join(dataDir, "jetstream", "jetstream", "$G", "streams", ref.stream, "msgs", "1.blk"), {
      recursive: true,
    });

    const res = await fetch(`${http.url}/mig/v0.1/publish/disk.fault`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { n: 1 } }),
    });
    const answer = { status: res.status, body: await res.json() };
    expectError(answer, 503, "MIG_UNAVAILABLE");
    const cause = answer.body.error.details.cause as string;
    expect(cause).toMatch(/^error opening msg block file \["<path>"\]: open <path>: is a directory$/);
    expect(JSON.stringify(answer.body)).not.toContain(dataDir);

    // The operator still has the whole error, paths included.
    const logged = logLines.find((line) => line.operation === "publish" && String(line.cause).includes("1.blk"));
    expect(String(logged?.cause)).toContain(join(dataDir, "jetstream"));
  });

  it("publicCause keeps a library's sentence and drops paths, file URLs and everything after its first line", () => {
    expect(publicCause(new Error("ENOENT: no such file or directory, open '/etc/mig/policy.yaml'"))).toBe(
      "ENOENT: no such file or directory, open '<path>'",
    );
    expect(publicCause(new Error("Cannot find module file:///srv/mig/x.ts imported from /srv/mig/y.ts"))).toBe(
      "Cannot find module <path> imported from <path>",
    );
    expect(
      publicCause(
        new Error("Converting circular structure to JSON\n    --> starting at object with constructor 'Object'"),
      ),
    ).toBe("Converting circular structure to JSON");
    expect(publicCause(new Error("no ack from the stream within 10000 ms"))).toBe(
      "no ack from the stream within 10000 ms",
    );
    expect(publicCause("x".repeat(500)).length).toBe(200);
  });
});
