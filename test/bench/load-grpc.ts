// gRPC load generator (run as its own process): N callers make unary mig.v0_1.Invocation/Invoke
// calls over one @grpc/grpc-js channel in a closed loop and print the figures as JSON lines.
// The body is the InvokeRequest as MIG wire JSON; it is turned into the proto-loader object once.
//
//   one run:  node --import tsx test/bench/load-grpc.ts --address 127.0.0.1:9090 \
//               --body '{"capability":"x","payload":{}}' --concurrency 64 --warmup-ms 2000 --duration-ms 10000
//   on command: ... --serve, then one {"warmup_ms":…,"duration_ms":…} line per run on stdin
import { type Client, credentials, loadPackageDefinition, Metadata, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { LOADER_OPTIONS, PROTO_FILE } from "../../bindings/grpc/proto.ts";
import { fromProto, toProto } from "../../bindings/grpc/translate.ts";
import { checkProbeReply, parseLoaderArgs, runLoader } from "./closed-loop.ts";

const CALL_TIMEOUT_MS = 5_000;

const args = parseLoaderArgs(["address"]);
const request = toProto(JSON.parse(args.body));
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = loadPackageDefinition(loadSync(PROTO_FILE, LOADER_OPTIONS)) as any;
type Unary = (
  req: unknown,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, value?: unknown) => void,
) => void;
const client = new pkg.mig.v0_1.Invocation(String(args.values.address), credentials.createInsecure()) as Client & {
  Invoke: Unary;
};
const metadata = new Metadata();

function invoke(): Promise<unknown> {
  return new Promise((resolve, reject) => {
    client.Invoke(request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, value) =>
      err ? reject(err) : resolve(value),
    );
  });
}

await runLoader(args, {
  tool: "grpc",
  async probe() {
    const reply = (await invoke()) as Record<string, unknown>;
    return checkProbeReply(JSON.stringify(fromProto(reply)));
  },
  async call() {
    await invoke();
  },
  async close() {
    client.close();
  },
});
