// A thin gRPC client for the mig.v0_1 services, generated at run time from schemas/mig.proto (the standard's wire contract).

import { join } from "node:path";
import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const PROTO = join(import.meta.dirname, "../schemas/mig.proto");

export type GrpcAnswer =
  | { ok: true; method: string; value: Record<string, unknown> }
  | { ok: false; method: string; error: ServiceError };

/** What a streaming call delivered: its messages, and its status if it ended (the harness cancels it once it has enough). */
export interface GrpcStreamAnswer {
  method: string;
  messages: Record<string, unknown>[];
  /** The status code the call ended with (0 is OK); undefined when the harness stopped it first. */
  code: number | undefined;
  error: ServiceError | undefined;
}

export class GrpcClient {
  private readonly clients = new Map<string, Client>();
  private readonly pkg: Record<
    string,
    new (
      address: string,
      creds: ReturnType<typeof credentials.createInsecure>,
    ) => Client
  >;

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
    const name = `${service}/${method}`;
    return new Promise((resolve) => {
      (this.client(service) as any)[method](
        request,
        this.metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (error: ServiceError | null, value: any) =>
          resolve(error ? { ok: false, method: name, error } : { ok: true, method: name, value }),
      );
    });
  }

  /**
   * Opens a server-streaming call with `request`, or a bidi call that sends `request` (a list of messages)
   * and half-closes; collects messages until `enough(messages)` holds, the call ends, or the timeout.
   */
  stream(
    service: string,
    method: string,
    request: Record<string, unknown> | Record<string, unknown>[],
    enough: (messages: Record<string, unknown>[]) => boolean,
  ): Promise<GrpcStreamAnswer> {
    const client = this.client(service) as any;
    const options = { deadline: Date.now() + this.timeoutMs };
    const call = Array.isArray(request)
      ? client[method](this.metadata(), options)
      : client[method](request, this.metadata(), options);
    if (Array.isArray(request)) {
      for (const message of request) call.write(message);
      call.end();
    }
    const answer: GrpcStreamAnswer = {
      method: `${service}/${method}`,
      messages: [],
      code: undefined,
      error: undefined,
    };
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        resolve({ ...answer, messages: [...answer.messages] });
        call.cancel();
      };
      call.on("data", (message: Record<string, unknown>) => {
        answer.messages.push(message);
        if (enough(answer.messages)) settle();
      });
      call.on("error", (error: ServiceError) => {
        answer.error ??= error;
        answer.code ??= error.code;
        settle();
      });
      call.on("status", (s: { code: number }) => {
        answer.code ??= s.code;
        settle();
      });
    });
  }

  private client(service: string): Client {
    let client = this.clients.get(service);
    if (!client) {
      client = new this.pkg[service]!(this.address, credentials.createInsecure());
      this.clients.set(service, client);
    }
    return client;
  }

  private metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    metadata.set("x-tenant-id", this.tenant);
    return metadata;
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

/** Any JSON object as a google.protobuf.Struct literal (numbers become number_value). */
export function jsonStruct(object: Record<string, unknown>): Record<string, unknown> {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, jsonValue(v)])) };
}

function jsonValue(value: unknown): Record<string, unknown> {
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(jsonValue) } };
  if (typeof value === "object" && value !== null) return { structValue: jsonStruct(value as Record<string, unknown>) };
  return { nullValue: "NULL_VALUE" };
}
