// `mig conformance <url…>`: the conformance harness against any MIG endpoint, with a progress line while it runs and
// a table of the standard's checklist items at the end.
import { type Command, InvalidArgumentError, Option } from "commander";
import { CHECKLIST } from "../conformance/checklist.ts";
import { type Endpoints, exitStatus, reportJson, resultLine, summaryLine } from "../conformance/report.ts";
import { type CheckResult, PROFILES, type Profile } from "../conformance/types.ts";
import { bold, dim, printTable } from "./output.ts";

/**
 * Sorts the URLs by binding: the scheme says which; a gRPC URL becomes the harness's host:port, an MCP URL
 * (`mcp+http(s)://`) the endpoint's own http(s) URL, its path `/mcp` when it names none.
 */
function endpointsOf(urls: string[]): Endpoints {
  const endpoints: Endpoints = {};
  for (const raw of urls) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new InvalidArgumentError(`"${raw}" is not a URL: give one like http://127.0.0.1:8080`);
    }
    const binding =
      url.protocol === "http:" || url.protocol === "https:"
        ? "http"
        : url.protocol === "nats:" || url.protocol === "tls:"
          ? "nats"
          : url.protocol === "grpc:"
            ? "grpc"
            : url.protocol === "mcp+http:" || url.protocol === "mcp+https:"
              ? "mcp"
              : undefined;
    if (!binding)
      throw new InvalidArgumentError(`${raw}: the harness speaks http(s)://, nats://, grpc:// and mcp+http(s)://`);
    if (endpoints[binding])
      throw new InvalidArgumentError(`two ${binding} endpoints given: ${endpoints[binding]} and ${raw}`);
    endpoints[binding] =
      binding === "grpc" ? `${url.hostname}:${url.port || "9090"}` : binding === "mcp" ? mcpEndpointOf(raw) : raw;
  }
  return endpoints;
}

function mcpEndpointOf(raw: string): string {
  const url = new URL(raw.slice("mcp+".length));
  if (url.pathname === "/") url.pathname = "/mcp";
  return url.toString();
}

/** One row per checklist item the run touched: how its standard checks ended ("-": none ran), and its conventions. */
function printSummary(results: CheckResult[]): void {
  const items = new Map<
    string,
    { pass: number; fail: number; skip: number; conventions: number; conventionsPassed: number }
  >();
  for (const result of results) {
    const row = items.get(result.item) ?? { pass: 0, fail: 0, skip: 0, conventions: 0, conventionsPassed: 0 };
    if (result.convention) {
      row.conventions++;
      if (result.status === "pass") row.conventionsPassed++;
    } else row[result.status]++;
    items.set(result.item, row);
  }
  const order = [...CHECKLIST.keys()];
  const rows = [...items.entries()]
    .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
    .map(([item, row]) => [
      item,
      row.fail > 0 ? "FAIL" : row.pass > 0 ? "PASS" : row.skip > 0 ? "SKIP" : "-",
      String(row.pass),
      String(row.fail),
      String(row.skip),
      row.conventions ? `${row.conventionsPassed}/${row.conventions} passed` : "-",
      CHECKLIST.get(item)?.text ?? "",
    ]);
  printTable(["ITEM", "RESULT", "PASS", "FAIL", "SKIP", "CONVENTIONS", "CHECKLIST"], rows);
}

export function addConformanceCommand(program: Command): void {
  program
    .command("conformance")
    .description("check a MIG endpoint against the standard's conformance checklist")
    .argument(
      "<url...>",
      "the endpoint's bindings: http(s)://host:port, nats://host:port, grpc://host:port, mcp+http(s)://host:port/mcp",
    )
    .addOption(new Option("--profile <profile>", "conformance profile").choices(PROFILES).default("core"))
    .option("--limited-token <jwt>", "a second token of the tenant lacking a scope, for scoped DISCOVER")
    .option("--only <prefixes...>", "run only checks whose id starts with one of these (e.g. CORE-3 EVENT)")
    .option("--verbose", "print every check's line, not only failures, while it runs")
    .action(
      async (
        urls: string[],
        options: { profile: Profile; limitedToken?: string; only?: string[]; verbose?: boolean },
        command: Command,
      ) => {
        const globals = command.optsWithGlobals<{
          tenant?: string;
          token?: string;
          timeout?: number;
          json?: boolean;
        }>();
        let endpoints: Endpoints;
        try {
          endpoints = endpointsOf(urls);
        } catch (err) {
          command.error(`error: ${(err as Error).message}`);
        }
        const progress = process.stderr.isTTY && !globals.json;
        let done = 0;
        // The harness (and the libraries of every binding) loads only when this command runs.
        const { runConformance } = await import("../conformance/harness.ts");
        const report = await runConformance({
          ...endpoints,
          ...(globals.tenant ? { tenant: globals.tenant } : {}),
          ...(globals.token ? { token: globals.token } : {}),
          ...(options.limitedToken ? { limitedToken: options.limitedToken } : {}),
          ...(globals.timeout ? { timeoutMs: globals.timeout } : {}),
          ...(options.only ? { only: options.only } : {}),
          profile: options.profile,
          onResult: globals.json
            ? undefined
            : (result) => {
                done++;
                if (progress) process.stderr.write(`\r\u001b[K${dim(`[${done}] ${result.id}`)}`);
                if (options.verbose || result.status === "fail" || !progress) {
                  if (progress) process.stderr.write("\r\u001b[K");
                  process.stdout.write(`${resultLine(result)}\n`);
                }
              },
        }).catch((err: unknown) => command.error(`error: ${err instanceof Error ? err.message : String(err)}`));
        if (progress) process.stderr.write("\r\u001b[K");
        if (globals.json) process.stdout.write(`${reportJson(report, endpoints)}\n`);
        else {
          printSummary(report.results);
          process.stdout.write(`${bold(summaryLine(report, endpoints))}\n`);
        }
        process.exitCode = exitStatus(report);
      },
    );
}
