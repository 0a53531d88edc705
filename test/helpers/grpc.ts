// Test helper: real @grpc/grpc-js clients generated from schemas/mig.proto, promise-shaped calls, and status assertions.
import { Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { expect } from "vitest";
import { LOADER_OPTIONS, PROTO_FILE } from "../../bindings/grpc/proto.ts";

type Unary = (request: unknown, metadata: Metadata, options: { deadline?: number }, callback: (err: ServiceError | null, value?: any) => void) => { cancel(): void };
export type MigClient = Client & Record<string, Unary>;

export interface MigClients {
  discovery: MigClient;
  invocation: MigClient;
  events: MigClient;
  control: MigClient;
  raw: Client;
  close(): void;
}

export function migClients(address: string): MigClients {
  const pkg = loadPackageDefinition(loadSync(PROTO_FILE, LOADER_OPTIONS)) as any;
  const make = (name: string) => new pkg.mig.v0_1[name](address, credentials.createInsecure()) as MigClient;
  const clients = {
    discovery: make("Discovery"),
    invocation: make("Invocation"),
    events: make("Events"),
    control: make("Control"),
    raw: new Client(address, credentials.createInsecure()),
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}

export interface CallOptions {
  metadata?: Record<string, string>;
  deadlineMs?: number;
}

function metadataOf(values: Record<string, string> = {}): Metadata {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(values)) metadata.set(key, value);
  return metadata;
}

/** Starts a unary call; `result` settles with the answer or the ServiceError, `cancel` cancels the call. */
export function startCall(client: MigClient, method: string, request: unknown, options: CallOptions = {}) {
  let call: { cancel(): void } | undefined;
  const result = new Promise<any>((resolve, reject) => {
    const deadline = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
    call = client[method]!.call(client, request, metadataOf(options.metadata), deadline, (err, value) => (err ? reject(err) : resolve(value)));
  });
  return { result, cancel: () => call!.cancel() };
}

export function unary(client: MigClient, method: string, request: unknown, options: CallOptions = {}): Promise<any> {
  return startCall(client, method, request, options).result;
}

/** Sends raw bytes to a method path, as a client with a different (or broken) proto would. */
export function rawCall(clients: MigClients, path: string, bytes: Buffer, options: CallOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    clients.raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      metadataOf(options.metadata),
      (err, value) => (err ? reject(err) : resolve(value!)),
    ),
  );
}

/** The call failed with this gRPC status and carries the MIG error code in its message and trailers. */
export async function expectStatus(pending: Promise<unknown>, grpcCode: number, migCode: string): Promise<ServiceError> {
  const err = (await pending.then(
    (value) => {
      throw new Error(`expected status ${grpcCode} (${migCode}), got an answer: ${JSON.stringify(value).slice(0, 300)}`);
    },
    (e: ServiceError) => e,
  )) as ServiceError;
  expect({ code: err.code, details: err.details }).toMatchObject({ code: grpcCode, details: expect.stringMatching(new RegExp(`^${migCode}: .{10,}`)) });
  expect(err.metadata.get("mig-error-code")).toEqual([migCode]);
  expect(err.metadata.get("mig-error-retryable")[0]).toMatch(/^(true|false)$/);
  return err;
}

/** A JSON object as a google.protobuf.Struct literal, written out the way a protobuf client builds one. */
export function struct(object: Record<string, string | number | boolean>): object {
  const fields: Record<string, object> = {};
  for (const [key, value] of Object.entries(object)) {
    fields[key] =
      typeof value === "string" ? { stringValue: value } : typeof value === "number" ? { numberValue: value } : { boolValue: value };
  }
  return { fields };
}
