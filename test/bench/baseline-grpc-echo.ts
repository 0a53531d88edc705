// Raw gRPC baseline (run as its own process): a bare @grpc/grpc-js server with only
// mig.v0_1.Invocation/Invoke, loaded from schemas/mig.proto as the runtime loads it, answering
// each InvokeRequest with an InvokeResponse (fresh header, the capability, payload
// {output: <request payload>}); prints {"ready":true,"address":...} once listening.
//
//   node --import tsx test/bench/baseline-grpc-echo.ts [--port 0]
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { LOADER_OPTIONS, PROTO_FILE } from "../../bindings/grpc/proto.ts";
import { exitWithParent } from "./exit-with-parent.ts";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });
const definition = loadSync(PROTO_FILE, LOADER_OPTIONS)["mig.v0_1.Invocation"] as unknown as ServiceDefinition;

interface InvokeRequestObject {
  header?: { tenant_id?: string };
  capability?: string;
  payload?: unknown;
}

function invoke(call: ServerUnaryCall<InvokeRequestObject, unknown>, callback: sendUnaryData<unknown>): void {
  const request = call.request;
  const ms = Date.now();
  callback(null, {
    header: {
      mig_version: "0.1",
      message_id: randomUUID(),
      timestamp: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
      tenant_id: request.header?.tenant_id ?? "",
    },
    capability: request.capability ?? "",
    payload: { fields: { output: request.payload ? { structValue: request.payload } : { nullValue: "NULL_VALUE" } } },
  });
}

const server = new Server();
server.addService(definition, {
  Invoke: invoke,
  StreamInvoke: (call: { end(): void }) => call.end(),
});
server.bindAsync(`127.0.0.1:${values.port}`, ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ ready: true, address: `127.0.0.1:${port}` })}\n`);
});
exitWithParent();
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
