// Listeners: HTTPS on the HTTP binding from cert and key paths, and /metrics on its own listener.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MetricsListener, startMetricsListener } from "../bindings/http/metrics-listener.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const dir = mkdtempSync(join(tmpdir(), "mig-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");
let t: TestRuntime;
let metrics: MetricsListener;

function httpsPost(url: string, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: "POST", ca: readFileSync(cert), headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

beforeAll(async () => {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-keyout",
      key,
      "-out",
      cert,
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  t = await startTestRuntime({ config: { httpTlsCert: cert, httpTlsKey: key, metricsAddr: "127.0.0.1:0" } });
  metrics = await startMetricsListener(t.runtime, "127.0.0.1:0");
});
afterAll(async () => {
  await metrics?.close();
  await t?.stop();
});

describe("listeners", () => {
  it("serves the MIG API over HTTPS with the configured certificate", async () => {
    expect(t.http.url).toMatch(/^https:\/\//);
    const res = await httpsPost(`${t.http.url}/mig/v0.1/invoke/observatory.models.infer`, {
      header: { tenant_id: "acme" },
      payload: { input: "x" },
    });
    expect(res.status).toBe(200);
    expect(res.body.payload.result).toBe("ok");
    await expect(fetch(`${t.http.url.replace("https", "http")}/metrics`)).rejects.toThrow();
  });

  it("with MIG_METRICS_ADDR, /metrics moves to its own listener", async () => {
    const scrape = await fetch(`${metrics.url}/metrics`);
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain("mig_errors_total");
    expect((await fetch(`${metrics.url}/admin/v0.1/audit`)).status).toBe(404);
    const main = await new Promise<number>((resolve, reject) =>
      request(`${t.http.url}/metrics`, { ca: readFileSync(cert) }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
        .on("error", reject)
        .end(),
    );
    expect(main).toBe(404);
  });
});
