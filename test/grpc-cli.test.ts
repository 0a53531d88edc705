// `mig start` serves gRPC: the standard's gRPC smoke checks pass against the real process, and reflection alone is enough to call it.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { credentials, loadPackageDefinition, type ServiceError, status } from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer, loadSync } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOADER_OPTIONS } from "../bindings/grpc/proto.ts";
import { runConformance } from "../conformance/harness.ts";
import { type MigClients, migClients, struct, subscribeCall, unary } from "./helpers/grpc.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";

let mig: MigProcess;
let address: string;
let c: MigClients;

beforeAll(async () => {
  mig = startMig(["start"]);
  const line = await mig.waitForLog("gRPC binding listening");
  address = String(line.addr);
  c = migClients(address);
});
afterAll(async () => {
  c?.close();
  await mig?.stop("SIGTERM");
});

describe("mig start over gRPC", () => {
  it("logs one line with the gRPC address", () => {
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(mig.logs.filter((l) => String(l.msg).includes("gRPC binding listening"))).toHaveLength(1);
  });

  it("passes the standard's gRPC smoke checks (Hello, Discover, Invoke), tenant in metadata and header", async () => {
    const metadata = { metadata: { "x-tenant-id": "acme" } };
    const header = { tenant_id: "acme", mig_version: "0.1" };
    const hello = await unary(
      c.discovery,
      "Hello",
      { header, supported_versions: ["0.1"], requested_bindings: ["BINDING_TYPE_GRPC"] },
      metadata,
    );
    expect(hello.selected_version).toBe("0.1");
    expect(hello.selected_binding).toBe("BINDING_TYPE_GRPC");
    const discover = await unary(c.discovery, "Discover", { header }, metadata);
    expect(discover.capabilities.length).toBeGreaterThan(0);
    const invoke = await unary(
      c.invocation,
      "Invoke",
      { header, capability: "observatory.models.infer", payload: struct({ input: "health-check" }) },
      metadata,
    );
    expect(invoke.capability).not.toBe("");
  });

  it("server reflection lists the four services and describes them well enough to call Hello without mig.proto", async () => {
    const reflection = reflectionClient(address);
    const services = await reflect(reflection, { list_services: "" });
    expect(services.list_services_response.service.map((s: { name: string }) => s.name)).toEqual(
      expect.arrayContaining(["mig.v0_1.Discovery", "mig.v0_1.Invocation", "mig.v0_1.Events", "mig.v0_1.Control"]),
    );
    const files = await reflect(reflection, { file_containing_symbol: "mig.v0_1.Discovery" });
    const descriptors: Buffer[] = files.file_descriptor_response.file_descriptor_proto;
    expect(descriptors.length).toBeGreaterThan(0);
    reflection.close();

    // What grpcurl does: build a FileDescriptorSet from the answer and call through it.
    const set = Buffer.concat(descriptors.map((d) => Buffer.concat([Buffer.from([0x0a]), varint(d.length), d])));
    const pkg = loadPackageDefinition(loadFileDescriptorSetFromBuffer(set, LOADER_OPTIONS)) as any;
    const discovery = new pkg.mig.v0_1.Discovery(address, credentials.createInsecure());
    const hello = await new Promise<any>((resolve, reject) =>
      discovery.Hello(
        { header: { tenant_id: "acme" }, supported_versions: ["0.1"] },
        (err: ServiceError | null, value: unknown) => (err ? reject(err) : resolve(value)),
      ),
    );
    discovery.close();
    expect(hello.selected_version).toBe("0.1");
  });

  it("streams an invocation and replays events over gRPC (the harness's STREAM-1 and EVENT-4 gRPC checks)", async () => {
    const report = await runConformance({
      grpc: address,
      profile: "full",
      tenant: "acme",
      only: ["STREAM-1.grpc", "EVENT-4.grpc"],
    });
    expect(report.results.map((r) => `${r.id} ${r.status}`)).toEqual([
      "STREAM-1.grpc.stream-invoke pass",
      "EVENT-4.grpc.replay-from-cursor pass",
    ]);
  });

  it("stops cleanly on SIGTERM with the gRPC listener open and a subscription streaming", async () => {
    const sub = subscribeCall(c, { header: { tenant_id: "acme" }, topic: "cli.shutdown" });
    await new Promise((resolve) => sub.call.once("metadata", resolve));
    expect(await mig.stop("SIGTERM")).toBe(0);
    await sub.end();
    // The binding ended the subscription itself, with a MIG error, rather than cutting the call off.
    expect(sub.code).toBe(status.UNAVAILABLE);
    expect(sub.error!.metadata.get("mig-error-code")).toEqual(["MIG_UNAVAILABLE"]);
    c.close();
  });
});

function reflectionClient(addr: string): any {
  const proto = join(
    dirname(createRequire(import.meta.url).resolve("@grpc/reflection")),
    "../proto/grpc/reflection/v1/reflection.proto",
  );
  const pkg = loadPackageDefinition(loadSync(proto, LOADER_OPTIONS)) as any;
  return new pkg.grpc.reflection.v1.ServerReflection(addr, credentials.createInsecure());
}

/** One request on a ServerReflectionInfo stream, and its one answer. */
function reflect(client: any, request: Record<string, unknown>): Promise<any> {
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo();
    stream.on("data", (answer: any) => {
      resolve(answer);
      stream.end();
    });
    stream.on("error", reject);
    stream.write(request);
  });
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 127) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}
