// The client commands of `mig`: each of the seven MIG operations against any endpoint, through the client library.
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { type ConnectOptions, connect, type MigClient } from "../client/index.ts";
import { MigError } from "../schemas/errors.ts";
import type { EventMessage, JsonObject, StreamFrame } from "../schemas/types.ts";
import { dim, EXIT_INTERRUPTED, printJson, printTable, printValue, reportFailure } from "./output.ts";

/** What one run of a command was given. */
interface Invocation {
  globals: GlobalOptions;
  args: string[];
  options: Record<string, any>;
}

interface GlobalOptions {
  url: string;
  tenant?: string;
  token?: string;
  timeout?: number;
  json?: boolean;
}

const DEFAULT_URL = "http://127.0.0.1:8080";

function positive(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a whole number > 0`);
    return value;
  };
}

function nonNegative(name: string) {
  return (raw: string): number => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0`);
    return value;
  };
}

/** The payload of `--data`: JSON text, `@file.json`, or `-` (or `@-`) for standard input; `{}` when absent. */
function payloadOf(data: string | undefined): JsonObject {
  if (data === undefined) return {};
  let text: string;
  let source: string;
  if (data === "-" || data === "@-") {
    text = readFileSync(0, "utf8");
    source = "standard input";
  } else if (data.startsWith("@")) {
    source = data.slice(1);
    try {
      text = readFileSync(source, "utf8");
    } catch (err) {
      throw new MigError("MIG_INVALID_REQUEST", `cannot read ${source}: ${(err as Error).message}`, {
        retryable: false,
      });
    }
  } else {
    text = data;
    source = "--data";
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new MigError("MIG_INVALID_REQUEST", `${source} is not JSON: ${(err as Error).message}`, { retryable: false });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new MigError("MIG_INVALID_REQUEST", `${source} must hold a JSON object, like {"input":"hello"}`, {
      retryable: false,
    });
  }
  return value as JsonObject;
}

function globalsOf(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

async function clientFor(globals: GlobalOptions): Promise<MigClient> {
  const options: ConnectOptions = {};
  if (globals.tenant) options.tenant = globals.tenant;
  if (globals.token) options.token = globals.token;
  if (globals.timeout) options.timeoutMs = globals.timeout;
  return connect(globals.url, options);
}

/** Runs one command with a client, prints its failure as a sentence, and closes the client either way. */
function run(name: string, body: (client: MigClient, call: Invocation, stop: AbortSignal) => Promise<void>) {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const globals = globalsOf(command);
    const stop = new AbortController();
    const interrupt = () => {
      stop.abort();
      process.exitCode = EXIT_INTERRUPTED;
    };
    process.once("SIGINT", interrupt);
    let client: MigClient | undefined;
    try {
      client = await clientFor(globals);
      await body(client, { globals, args: command.args, options: command.opts() }, stop.signal);
    } catch (err) {
      if (!stop.signal.aborted) reportFailure(name, err);
    } finally {
      process.off("SIGINT", interrupt);
      await client?.close().catch(() => undefined);
    }
  };
}

function printFrame(frame: StreamFrame, json: boolean | undefined): void {
  if (json) printJson(frame);
  else printValue(frame.payload ?? {});
}

function printEvent(event: EventMessage, json: boolean | undefined): void {
  if (json) return printJson(event);
  const key = event.key === undefined ? "" : ` key=${event.key}`;
  process.stdout.write(
    `${dim(`#${event.sequence}${event.replay ? " replay" : ""} ${event.published_at}${key}`)} ${JSON.stringify(event.payload)}\n`,
  );
}

const EXAMPLES = `
Examples (against \`npm start\` on this machine; MIG_URL and MIG_TENANT save the flags):
  mig hello --tenant acme
  mig discover --tenant acme
  mig invoke observatory.models.infer --data '{"input":"hello"}' --tenant acme
  mig stream observatory.models.infer --data '{"input":"the quick brown fox"}' --tenant acme
  mig publish orders.created --data @order.json --key customer-9 --tenant acme
  mig subscribe orders.created --from 0 --tenant acme
  mig invoke observatory.models.infer --data - --json --url nats://127.0.0.1:4222 --tenant acme < payload.json
  mig conformance http://127.0.0.1:8080 nats://127.0.0.1:4222 grpc://127.0.0.1:9090 --profile full

Exit status: 0 on success; 10–20 for a MIG error (10 MIG_INVALID_REQUEST, 11 MIG_UNAUTHORIZED, 12 MIG_FORBIDDEN,
13 MIG_NOT_FOUND, 14 MIG_UNSUPPORTED_CAPABILITY, 15 MIG_VERSION_MISMATCH, 16 MIG_TIMEOUT, 17 MIG_RATE_LIMITED,
18 MIG_BACKPRESSURE, 19 MIG_UNAVAILABLE, 20 MIG_INTERNAL); 1 for a usage error or a failed conformance run;
130 after Ctrl-C.
`;

export function addClientCommands(program: Command): void {
  program
    .addOption(
      new Option("--url <url>", "the MIG endpoint: http(s)://, nats:// or grpc://").env("MIG_URL").default(DEFAULT_URL),
    )
    .addOption(new Option("--tenant <id>", "tenant of the calls (else the token's)").env("MIG_TENANT"))
    .addOption(new Option("--token <jwt>", "bearer token").env("MIG_TOKEN"))
    .addOption(new Option("--timeout <ms>", "deadline of each call").argParser(positive("--timeout")))
    .option("--json", "print JSON documents, one per line, for scripts")
    .addHelpText("after", EXAMPLES);

  program
    .command("hello")
    .description("negotiate the MIG version and binding with the endpoint")
    .action(
      run("hello", async (client, { globals }) => {
        const answer = await client.hello();
        if (globals.json) return printJson(answer);
        process.stdout.write(
          `${answer.server_id}: MIG ${answer.selected_version} over ${answer.selected_binding}` +
            `${answer.enabled_features.length ? `; features: ${answer.enabled_features.join(", ")}` : ""}\n`,
        );
      }),
    );

  program
    .command("discover")
    .description("list the capabilities this tenant may call")
    .argument("[query]", "keep only capabilities whose id contains this")
    .action(
      run("discover", async (client, { globals, args }) => {
        const query = args[0];
        const answer = await client.discover(query ? { query } : {});
        if (globals.json) return printJson(answer);
        printTable(
          ["CAPABILITY", "VERSION", "MODES", "SCOPES"],
          answer.capabilities.map((c) => [
            c.id ?? "",
            c.version ?? "",
            (c.modes ?? []).join(","),
            (c.auth_scopes ?? []).join(",") || "-",
          ]),
        );
      }),
    );

  program
    .command("invoke")
    .description("call a capability once and print its answer")
    .argument("<capability>", "capability id, e.g. observatory.models.infer")
    .option("--data <json>", "the payload: JSON, @file.json, or - for standard input")
    .option("--idempotency-key <key>", "dedup key; retries reuse it (one is made when not given)")
    .action(
      run("invoke", async (client, { globals, args, options }) => {
        const answer = await client.invoke(args[0]!, payloadOf(options.data), {
          ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
        });
        if (globals.json) printJson(answer);
        else printValue(answer.payload);
      }),
    );

  program
    .command("stream")
    .description("call a streaming capability and print its frames as they arrive")
    .argument("<capability>", "capability id")
    .option("--data <json>", "the payload: JSON, @file.json, or - for standard input")
    .action(
      run("stream", async (client, { globals, args, options }, stop) => {
        const stream = client.stream(args[0]!, payloadOf(options.data), { signal: stop });
        for await (const frame of stream) printFrame(frame, globals.json);
        const result = await stream.result;
        if (globals.json) printJson({ result });
        else process.stdout.write(`${dim("result")} ${JSON.stringify(result)}\n`);
      }),
    );

  program
    .command("cancel")
    .description("cancel an invocation or a stream by its message id")
    .argument("<message-id>", "the header.message_id of the call to cancel")
    .option("--reason <text>", "why, for the provider and the audit log")
    .action(
      run("cancel", async (client, { globals, args, options }) => {
        const reason: string | undefined = options.reason;
        const ack = await client.cancel(args[0]!, reason ? { reason } : {});
        if (globals.json) return printJson(ack);
        process.stdout.write(`${ack.target_message_id}: ${ack.status}\n`);
      }),
    );

  program
    .command("publish")
    .description("publish an event to a topic")
    .argument("<topic>", "namespaced topic, e.g. orders.created")
    .option("--data <json>", "the event's payload: JSON, @file.json, or - for standard input")
    .option("--key <key>", "the event's ordering key")
    .option("--idempotency-key <key>", "dedup key; retries reuse it (one is made when not given)")
    .action(
      run("publish", async (client, { globals, args, options }) => {
        const ack = await client.publish(args[0]!, payloadOf(options.data), {
          ...(options.key === undefined ? {} : { key: options.key }),
          ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
        });
        if (globals.json) return printJson(ack);
        process.stdout.write(`${ack.topic} #${ack.sequence} ${dim(ack.event_id)}\n`);
      }),
    );

  program
    .command("subscribe")
    .description("print a topic's events as they arrive (Ctrl-C stops)")
    .argument("<topic>", "namespaced topic")
    .addOption(
      new Option("--from <sequence>", "replay after this sequence (0: from the first)").argParser(
        nonNegative("--from"),
      ),
    )
    .option("--consumer-id <id>", "durable subscription: continues where the last one with this id stopped")
    .addOption(new Option("--count <n>", "stop after n events").argParser(positive("--count")))
    .addOption(
      new Option("--max-inflight <n>", "events in flight to this subscriber").argParser(positive("--max-inflight")),
    )
    .action(
      run("subscribe", async (client, { globals, args, options }, stop) => {
        const subscription = client.subscribe(args[0]!, {
          signal: stop,
          ...(options.from === undefined ? {} : { resumeCursor: options.from }),
          ...(options.consumerId ? { consumerId: options.consumerId } : {}),
          ...(options.maxInflight ? { maxInflight: options.maxInflight } : {}),
        });
        let seen = 0;
        for await (const event of subscription) {
          printEvent(event, globals.json);
          if (options.count !== undefined && ++seen >= options.count) break;
        }
      }),
    );

  program
    .command("heartbeat")
    .description("ask the endpoint how often to beat and how loaded it is")
    .action(
      run("heartbeat", async (client, { globals }) => {
        const ack = await client.heartbeat();
        if (globals.json) return printJson(ack);
        process.stdout.write(`beat every ${ack.suggested_interval_ms} ms; load ${ack.load_factor}\n`);
      }),
    );
}
