// Command line of the conformance harness: runs a profile's checks against a MIG endpoint and prints one line per check.

import { Command, InvalidArgumentError, Option } from "commander";
import { runConformance } from "./harness.ts";
import { type CheckResult, PROFILES, type Profile } from "./types.ts";

interface CliOptions {
  http?: string;
  nats?: string;
  grpc?: string;
  tenant: string;
  token?: string;
  profile: Profile;
  timeout: number;
  only?: string[];
  json?: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function line(result: CheckResult): string {
  const status = result.status.toUpperCase().padEnd(4);
  const reason = result.reason ? ` — ${result.reason}` : "";
  return `${status} ${result.id}: ${result.description}${reason}`;
}

const program = new Command()
  .name("mig-conformance")
  .description("Run MIG v0.1 conformance checks against any MIG endpoint.")
  .option("--http <url>", "base URL of the HTTP binding, e.g. http://127.0.0.1:8080")
  .option("--nats <url>", "NATS server URL where the endpoint serves mig.v0_1.<tenant>.* subjects")
  .option("--grpc <host:port>", "address of the gRPC binding (plaintext), e.g. 127.0.0.1:9090")
  .option("--tenant <id>", "tenant id used in every request", "acme")
  .option("--token <jwt>", "bearer token sent as Authorization")
  .addOption(new Option("--profile <profile>", "conformance profile to check").choices(PROFILES).default("core"))
  .option("--timeout <ms>", "timeout per request and per wait", positiveInt, 5000)
  .option("--only <prefixes...>", "run only checks whose id starts with one of these (e.g. CORE-3 EVENT)")
  .option("--json", "print the report as JSON instead of lines")
  .action(async (opts: CliOptions) => {
    if (!opts.http && !opts.nats && !opts.grpc)
      program.error("error: give --http <url>, --nats <url> and/or --grpc <host:port>");
    const report = await runConformance({
      http: opts.http,
      nats: opts.nats,
      grpc: opts.grpc,
      tenant: opts.tenant,
      token: opts.token,
      profile: opts.profile,
      timeoutMs: opts.timeout,
      only: opts.only,
      onResult: opts.json ? undefined : (result) => console.log(line(result)),
    }).catch((err: unknown) => program.error(`error: ${err instanceof Error ? err.message : String(err)}`));
    if (opts.json) {
      console.log(
        JSON.stringify(
          { ...report, endpoints: { http: opts.http ?? null, nats: opts.nats ?? null, grpc: opts.grpc ?? null } },
          null,
          2,
        ),
      );
    } else {
      const verdict = report.failed === 0 ? "OK" : "FAILED";
      console.log(
        `${verdict}: ${report.profile} profile, ${report.passed} passed, ${report.failed} failed, ` +
          `${report.skipped} skipped against ${[opts.http, opts.nats, opts.grpc].filter(Boolean).join(" and ")}`,
      );
    }
    process.exitCode = report.failed > 0 ? 1 : 0;
  });

await program.parseAsync();
