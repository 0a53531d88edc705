// A thin gRPC client for the mig.v0_1 services, generated at run time from schemas/mig.proto (the standard's wire contract).

import { join } from "node:path";
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const PROTO = join(import.meta.dirname, "../schemas/mig.proto");

export type GrpcAnswer = { ok: true; method: string; value: Record<string, unknown> } | { ok: false; method: string; error: ServiceError };

export class GrpcClient {
  private readonly clients = new Map<string, Client>();
  private readonly pkg: Record<string, new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client>;

  constructor(
    readonly address: string,
    private readonly tenant: string,
    private readonly token: string | undefined,
    private readonly timeoutMs: number,
  ) {
    const definition = loadSync(PROTO, { keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true });
    this.pkg = (loadPackageDefinition(definition) as any).mig.v0_1;
  }

  /** Calls `Service/Method` with `x-tenant-id` (and `authorization`) metadata, as the standard's smoke client does. */
  call(service: string, method: string, request: Record<string, unknown>): Promise<GrpcAnswer> {
    let client = this.clients.get(service);
    if (!client) {
      client = new this.pkg[service]!(this.address, credentials.createInsecure());
      this.clients.set(service, client);
    }
    const metadata = new Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    metadata.set("x-tenant-id", this.tenant);
    const name = `${service}/${method}`;
    return new Promise((resolve) => {
      (client as any)[method](request, metadata, { deadline: Date.now() + this.timeoutMs }, (error: ServiceError | null, value: any) =>
        resolve(error ? { ok: false, method: name, error } : { ok: true, method: name, value }),
      );
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/** A JSON object of strings as a google.protobuf.Struct literal. */
export function stringStruct(object: Record<string, string>): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, { stringValue: v }])) };
}
