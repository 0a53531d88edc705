// The gRPC binding: mig.v0_1 services on @grpc/grpc-js; authenticates once, translates, calls the runtime, relays the answer.
import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { type Authenticator, CallerGone, type MigRuntime, parseAddr, type RequestContext } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import { serveSubscribe } from "./events.ts";
import { credentialsOf, deadlineAtOf, endedByDeadline, mergeHeaderFields, tenantOf } from "./metadata.ts";
import { decodedBody, migPackageDefinition, migService, type ServiceName } from "./proto.ts";
import { statusFor } from "./status.ts";
import { serveStreamInvoke } from "./stream-invoke.ts";
import type { StreamingCalls } from "./streaming-calls.ts";
import { answerToProto } from "./translate.ts";

export interface GrpcBindingOptions {
  /** Largest request message accepted (bytes); larger ones end with RESOURCE_EXHAUSTED. Default: config.maxBodyBytes. */
  maxReceiveBytes?: number;
}

export interface GrpcBinding {
  server: Server;
  /** host:port the server listens on (the chosen port when the configured one was 0). */
  address: string;
  port: number;
  /**
   * Stops taking calls and ends open streams and subscriptions (a stream with a cancel frame, a
   * subscription with UNAVAILABLE); unary calls still running after `graceMs` are cut off.
   */
  close(graceMs?: number): Promise<void>;
}

type Call = ServerUnaryCall<unknown, unknown>;

type Operation = (body: JsonObject, context: RequestContext, call: Call) => Promise<object>;

export async function startGrpcBinding(
  runtime: MigRuntime,
  authenticator: Authenticator,
  addr: string,
  options: GrpcBindingOptions = {},
): Promise<GrpcBinding> {
  const maxReceiveBytes = options.maxReceiveBytes ?? runtime.config.maxBodyBytes;

  /** One unary method: authenticate, decode, translate, run the operation, translate the answer back. */
  function unary(operation: Operation) {
    return (call: Call, callback: sendUnaryData<unknown>) => {
      const tenant = tenantOf(call.metadata);
      let body: JsonObject | undefined;
      const answer = async () => {
        const principal = await authenticator.authenticate(credentialsOf(call.metadata));
        body = decodedBody(call.request, runtime.config.maxJsonDepth);
        mergeHeaderFields(call.metadata, body);
        return operation(body, { principal, tenant, binding: "grpc" }, call);
      };
      answer().then(
        (value) => {
          let message: object;
          try {
            message = answerToProto(value as JsonObject);
          } catch (err) {
            callback(statusFor(err, body, tenant));
            return;
          }
          callback(null, message);
        },
        (err: unknown) => {
          if (!(err instanceof MigError))
            runtime.logger.error(
              { err: (err as Error)?.stack ?? String(err), path: call.getPath() },
              "gRPC handler failed",
            );
          callback(statusFor(err, body, tenant));
        },
      );
    };
  }

  /** INVOKE under the call's deadline; a call the client cancels cancels the invocation through the runtime. */
  const invoke: Operation = async (body, context, call) => {
    const deadlineAt = deadlineAtOf(call);
    if (Number.isFinite(deadlineAt)) context.deadlineAt = deadlineAt;
    if (call.cancelled) {
      throw new MigError("MIG_TIMEOUT", "the call was cancelled before the invocation started", {
        retryable: false,
        details: { cancelled: true },
      });
    }
    const gone = new CallerGone();
    const onCancelled = () => {
      // grpc-js also ends a call whose deadline passed; that deadline is the invocation's own (via
      // deadlineAt), so the runtime ends the work itself and counts it as timed out, not cancelled.
      if (!endedByDeadline(deadlineAt)) gone.abort("the gRPC client cancelled the call");
    };
    context.gone = gone;
    const pending = runtime.invoke(body, context);
    call.once("cancelled", onCancelled);
    try {
      return await pending;
    } finally {
      call.off("cancelled", onCancelled);
    }
  };

  /** Ends each open StreamInvoke and Subscribe call; they would otherwise hold a graceful shutdown for its whole grace. */
  const streaming: StreamingCalls = new Set();

  const handlers: Record<ServiceName, UntypedServiceImplementation> = {
    Discovery: {
      Hello: unary((body, context) => runtime.hello(body, context)),
      Discover: unary((body, context) => runtime.discover(body, context)),
    },
    Invocation: {
      Invoke: unary(invoke),
      StreamInvoke: (call: ServerDuplexStream<unknown, unknown>) =>
        serveStreamInvoke(runtime, authenticator, call, streaming),
    },
    Events: {
      Publish: unary((body, context) => runtime.publish(body, context)),
      Subscribe: (call: ServerWritableStream<unknown, unknown>) =>
        serveSubscribe(runtime, authenticator, call, streaming),
    },
    Control: {
      Cancel: unary((body, context) => runtime.cancel(body, context)),
      Heartbeat: unary((body, context) => runtime.heartbeat(body, context)),
    },
  };

  const server = new Server({ "grpc.max_receive_message_length": maxReceiveBytes });
  for (const [name, implementation] of Object.entries(handlers))
    server.addService(migService(name as ServiceName), implementation);
  new ReflectionService(migPackageDefinition()).addToServer(server);

  const { host } = parseAddr(addr);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(new Error(`the gRPC binding cannot listen on ${addr}: ${err.message}`)) : resolve(bound),
    ),
  );
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    server,
    address: `${shownHost}:${port}`,
    port,
    close: (graceMs = 0) =>
      new Promise<void>((resolve) => {
        if (graceMs <= 0) {
          server.forceShutdown();
          return resolve();
        }
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        for (const end of [...streaming]) end("the server is shutting down");
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
