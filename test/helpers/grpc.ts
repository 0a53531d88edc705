// Test helper: real @grpc/grpc-js clients generated from schemas/mig.proto, promise-shaped calls, and status assertions.
import { Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { expect } from "vitest";
import { LOADER_OPTIONS, PROTO_FILE } from "../../bindings/grpc/proto.ts";

type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline?: number },
  callback: (err: ServiceError | null, value?: any) => void,
) => { cancel(): void };
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
  return {
    ...clients,
    close: () => {
      for (const c of Object.values(clients)) c.close();
    },
  };
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
    call = client[method]!.call(client, request, metadataOf(options.metadata), deadline, (err, value) =>
      err ? reject(err) : resolve(value),
    );
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
export async function expectStatus(
  pending: Promise<unknown>,
  grpcCode: number,
  migCode: string,
): Promise<ServiceError> {
  const err = (await pending.then(
    (value) => {
      throw new Error(
        `expected status ${grpcCode} (${migCode}), got an answer: ${JSON.stringify(value).slice(0, 300)}`,
      );
    },
    (e: ServiceError) => e,
  )) as ServiceError;
  expect({ code: err.code, details: err.details }).toMatchObject({
    code: grpcCode,
    details: expect.stringMatching(new RegExp(`^${migCode}: .{10,}`)),
  });
  expect(err.metadata.get("mig-error-code")).toEqual([migCode]);
  expect(err.metadata.get("mig-error-retryable")[0]).toMatch(/^(true|false)$/);
  return err;
}

/** A JSON object as a google.protobuf.Struct literal, written out the way a protobuf client builds one. */
export function struct(object: Record<string, string | number | boolean>): object {
  const fields: Record<string, object> = {};
  for (const [key, value] of Object.entries(object)) {
    fields[key] =
      typeof value === "string"
        ? { stringValue: value }
        : typeof value === "number"
          ? { numberValue: value }
          : { boolValue: value };
  }
  return { fields };
}

/** A server stream or bidi call as a test reads it: messages in arrival order, and how the call ended. */
export class CallReader {
  readonly messages: any[] = [];
  /** Initial metadata the server sent. */
  metadata: Metadata | undefined;
  /** The ServiceError the call ended with, or undefined while running / when it ended OK. */
  error: ServiceError | undefined;
  /** The status code once the call has ended (0 is OK). */
  code: number | undefined;
  private waiters: (() => void)[] = [];

  constructor(readonly call: any) {
    call.on("metadata", (m: Metadata) => (this.metadata = m));
    call.on("data", (m: any) => {
      this.messages.push(m);
      this.wake();
    });
    call.on("error", (e: ServiceError) => {
      this.error = e;
      this.code = e.code;
      this.wake();
    });
    call.on("status", (s: { code: number }) => {
      this.code ??= s.code;
      this.wake();
    });
  }

  get ended(): boolean {
    return this.code !== undefined;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `check` holds (checked after each message and at the end); rejects when the call ends without it. */
  async until(what: string, check: () => boolean): Promise<void> {
    while (!check()) {
      if (this.ended)
        throw new Error(
          `the call ended (status ${this.code}${this.error ? `: ${this.error.details}` : ""}) before ${what}; got ${this.messages.length} messages`,
        );
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Resolves with the messages once the call has ended (its status is in `code` / `error`). */
  async end(): Promise<any[]> {
    while (!this.ended) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.messages;
  }
}

/** Opens a StreamInvoke call. */
export function streamInvoke(clients: MigClients, options: CallOptions = {}): CallReader {
  const deadline = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
  return new CallReader((clients.invocation as any).StreamInvoke(metadataOf(options.metadata), deadline));
}

/** Opens an Events.Subscribe call. */
export function subscribeCall(clients: MigClients, request: unknown, options: CallOptions = {}): CallReader {
  return new CallReader((clients.events as any).Subscribe(request, metadataOf(options.metadata)));
}

/** Opens a StreamInvoke call that writes raw bytes, as a client with a broken encoder would; answers are decoded. */
export function rawStreamInvoke(clients: MigClients): CallReader {
  const method = (loadSync(PROTO_FILE, LOADER_OPTIONS)["mig.v0_1.Invocation"] as any).StreamInvoke;
  return new CallReader(
    clients.raw.makeBidiStreamRequest(method.path, (b: Buffer) => b, method.responseDeserialize, new Metadata()),
  );
}
