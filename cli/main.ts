// The `mig` command line: `start` runs a whole runtime process (bus, bindings, demo provider), `worker` hosts providers,
// `dev cluster` runs a fleet here; the client commands call any MIG endpoint; `conformance` and `bench` measure one.
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { join } from "node:path";
import { Command, Option } from "commander";
import { integer, SETTINGS } from "../runtime/base/config.ts";
import { addClientCommands } from "./client-commands.ts";
import { addConformanceCommand } from "./conformance-command.ts";
import { addSchemaCommand } from "./schema-command.ts";

function addSettings(command: Command): Command {
  for (const setting of SETTINGS) {
    command.addOption(new Option(setting.flag, `${setting.description} (env ${setting.env})`));
  }
  return command;
}

const WORKER_BUS_HELP = `
Joining the bus:
  A gateway in auth mode jwt on its embedded bus (no MIG_NATS_URL, no MIG_NATS_CONF) generates the bus's users and
  writes <data dir>/credentials/runtime.json ({ "url", "user", "password" }, readable by its owner only).
  - on the same host: run the worker with the gateway's MIG_DATA_DIR; it reads that file (no MIG_NATS_URL needed).
  - elsewhere: copy the file and set MIG_NATS_CREDENTIALS=<path> (MIG_NATS_URL, if set, overrides its url).
  - any other bus: MIG_NATS_URL, with MIG_NATS_USER and MIG_NATS_PASSWORD or MIG_NATS_CREDS_FILE if it has users.
  Foreign providers (docs/bindings/provider-protocol.md) use <data dir>/credentials/provider.json instead.

Answering NATS callers itself (the direct lane, MIG_WORKER_DIRECT):
  The worker answers NATS invokes of its best_effort unary capabilities only while its auth and policy settings
  (MIG_AUTH_MODE, MIG_JWT_*, MIG_POLICY_FILE, the rate limits, MIG_CANCEL_SAME_SUBJECT, the admin scopes) equal
  every live gateway's, so it enforces the same policy; otherwise the gateways answer those callers, and the
  worker's log says which settings differ. Start it with the gateways' settings to keep the one-hop lane.
`;

const WORKER_MCP_HELP = `
MCP servers as providers (docs/mcp.md):
  Each tool of an attached MCP server becomes the capability <namespace>.<tool> (unary and server_stream, its
  progress as frames). --mcp takes the whole command line as one string (split like a shell, without expansion);
  a server over stdio is started again with backoff when it dies. Several servers: --mcp-config <file.yaml>.
`;

const program = new Command("mig").description("MIG v0.1 runtime on an embedded NATS bus");
addSettings(
  program.command("start").description("run a runtime: embedded bus (unless MIG_NATS_URL), bindings, demo provider"),
).action((options: Record<string, string | undefined>) =>
  import("./serve.ts")
    .then(({ start }) => start(options))
    .catch((err: unknown) => {
      process.stderr.write(`mig start: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    }),
);

addSettings(
  program
    .command("worker")
    .description(
      "host the capabilities that provider modules export, taking their work from the bus (needs MIG_NATS_URL or a credentials file)",
    )
    .argument("[module...]", "modules exporting defineCapability(...) results")
    .addOption(
      new Option(
        "--mcp <command line>",
        'attach the MCP server this command line starts, as one string: --mcp "node server.js --port 0"',
      ),
    )
    .addOption(new Option("--mcp-url <url>", "attach the MCP server at this Streamable HTTP URL"))
    .addOption(
      new Option(
        "--mcp-namespace <ns>",
        "capability id prefix for --mcp or --mcp-url (default: from the server's name)",
      ),
    )
    .addOption(
      new Option("--mcp-config <file>", "YAML file listing the MCP servers to attach (docs/mcp.md)").env(
        "MIG_MCP_CONFIG",
      ),
    )
    .addHelpText("after", WORKER_BUS_HELP + WORKER_MCP_HELP),
).action((modules: string[], options: Record<string, string | undefined>) =>
  import("./serve.ts")
    .then(({ worker }) => worker(modules, options))
    .catch((err: unknown) => {
      process.stderr.write(`mig worker: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    }),
);

program
  .command("dev")
  .description("tools for trying the runtime out on this machine")
  .command("cluster")
  .description(
    "run a fleet here: a NATS JetStream cluster, gateways and workers on fixed local ports; Ctrl-C stops them all",
  )
  .argument("[module...]", "provider modules the workers host", ["runtime/provider/demo-provider.ts"])
  .option("--nodes <n>", "nats-server nodes (JetStream keeps min(3, n) copies)", integer("--nodes", 1, 5), 3)
  .option("--gateways <n>", "gateways", integer("--gateways", 1, 5), 2)
  .option("--workers <n>", "workers hosting the modules", integer("--workers", 0, 10), 2)
  .option(
    "--base-port <port>",
    "the first node's client port (routes on this + 2000)",
    integer("--base-port", 1024, 60000),
    4222,
  )
  .option(
    "--http-port <port>",
    "the first gateway's HTTP port (the others count up)",
    integer("--http-port", 1024, 65000),
    8080,
  )
  .option(
    "--grpc-port <port>",
    "the first gateway's gRPC port (the others count up)",
    integer("--grpc-port", 1024, 65000),
    9090,
  )
  .option(
    "--data-dir <dir>",
    "where the nodes and gateways keep their data (under dev-cluster/)",
    process.env.MIG_DATA_DIR ?? "./data",
  )
  .action((modules: string[], options: Omit<import("./dev-cluster.ts").DevClusterOptions, "modules">) =>
    Promise.all([import("./dev-cluster.ts"), import("../runtime/base/logger.ts")])
      .then(([{ devCluster }, { createLogger }]) => devCluster({ ...options, modules }, createLogger("info")))
      .catch((err: unknown) => {
        process.stderr.write(`mig dev cluster: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      }),
  );

addClientCommands(program);
addConformanceCommand(program);
addSchemaCommand(program);

const mcpCommand = program
  .command("mcp")
  .description(
    "serve the capabilities of a MIG endpoint to an MCP client; --stdio for desktop clients (endpoint: --url or MIG_URL, token: MIG_TOKEN, tenant: MIG_TENANT)",
  )
  .option("--stdio", "speak MCP on standard input and output; notes go to standard error")
  .addOption(
    new Option("--manifest <path>", "MCP adapter manifest (YAML): tool, resource and prompt names").env(
      "MIG_MCP_MANIFEST",
    ),
  )
  .action((options: { stdio?: boolean; manifest?: string }, command: Command) => {
    if (!options.stdio) {
      process.stderr.write("mig mcp: give --stdio (a gateway serves MCP over HTTP itself, at /mcp of `mig start`)\n");
      process.exit(1);
    }
    const globals = command.optsWithGlobals<{ url: string; token?: string; tenant?: string; timeout?: number }>();
    return import("./mcp-stdio.ts")
      .then(({ serveMcpStdio }) => serveMcpStdio({ ...globals, manifest: options.manifest }))
      .catch((err: unknown) => {
        process.stderr.write(`mig mcp: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      });
  });

mcpCommand
  .command("parity")
  .description(
    "call every tool of an MCP server directly and through a throwaway MIG fleet (gateway /mcp → worker → server), and compare the answers",
  )
  .argument("<server>", "the server: its command line as one string (stdio), or an http(s):// URL (Streamable HTTP)")
  .option("--args <file>", "JSON or YAML file: {<tool>: {arguments: {…}, compare: false}} (docs/mcp.md)")
  .option("--namespace <ns>", "capability id prefix of the server's tools in the fleet (default: from its name)")
  .option("--verbose", "log the fleet's start and the worker's notes (standard error)")
  .action((server: string, options: { args?: string; namespace?: string; verbose?: boolean }, command: Command) => {
    const globals = command.optsWithGlobals<{ timeout?: number; json?: boolean }>();
    return import("./mcp-parity.ts")
      .then(({ runParity }) => runParity({ server, ...options, timeout: globals.timeout, json: globals.json }))
      .then((code) => process.exit(code))
      .catch((err: unknown) => {
        process.stderr.write(`mig mcp parity: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(2);
      });
  });

program
  .command("bench")
  .description("run the benchmark suite of this checkout (test/bench/run.ts); its options follow, e.g. --quick")
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .argument("[options...]", "passed to the benchmark runner")
  .action((options: string[]) => {
    const runner = join(import.meta.dirname, "../test/bench/run.ts");
    const child = spawn(process.execPath, ["--import", "tsx", runner, ...options], { stdio: "inherit" });
    child.on("exit", (code, signal) => process.exit(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
  });

await program.parseAsync(process.argv);
