// How a run is printed: one line per check (conventions marked), a summary that counts the standard's checks, and the JSON report.

import type { CheckResult, ConformanceReport, Tally } from "./types.ts";

/** The endpoints a run talked to, as given. */
export interface Endpoints {
  http?: string | undefined;
  nats?: string | undefined;
  grpc?: string | undefined;
  mcp?: string | undefined;
}

/** "PASS CORE-1.http.hello-negotiates: … — note"; a convention check carries "[convention]" after its status. */
export function resultLine(result: CheckResult): string {
  const status = result.status.toUpperCase().padEnd(4);
  const marker = result.convention ? " [convention]" : "";
  const reason = result.reason ? ` — ${result.reason}` : "";
  return `${status}${marker} ${result.id}: ${result.description}${reason}`;
}

function tally(t: Tally): string {
  return `${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`;
}

/** The verdict counts the standard's checks only; the conventions' counts follow, apart. */
export function summaryLine(report: ConformanceReport, endpoints: Endpoints): string {
  const verdict = report.failed === 0 ? "OK" : "FAILED";
  const against = [endpoints.http, endpoints.nats, endpoints.grpc, endpoints.mcp].filter(Boolean).join(" and ");
  const conventions = report.conventions.passed + report.conventions.failed + report.conventions.skipped;
  return (
    `${verdict}: ${report.profile} profile, ${tally(report)} against ${against}` +
    (conventions > 0 ? `; conventions (not counted): ${tally(report.conventions)}` : "")
  );
}

/** The `--json` document: the report plus the endpoints. */
export function reportJson(report: ConformanceReport, endpoints: Endpoints): string {
  return JSON.stringify(
    {
      ...report,
      endpoints: {
        http: endpoints.http ?? null,
        nats: endpoints.nats ?? null,
        grpc: endpoints.grpc ?? null,
        mcp: endpoints.mcp ?? null,
      },
    },
    null,
    2,
  );
}

/** The exit status of a run: 1 when a check of the standard failed, else 0 (convention checks never fail a run). */
export function exitStatus(report: ConformanceReport): number {
  return report.failed > 0 ? 1 : 0;
}
