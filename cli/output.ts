// How the client commands print: readable lines and tables for a person, one JSON document per line for a script,
// colours only on a terminal, and an exit status that names the MIG code of a failure.
import type { MigErrorCode } from "../schemas/error-codes.ts";
import { MigError } from "../schemas/errors.ts";

/** Exit statuses of a failed call, by MIG code; 1 stays the status of a usage error or a failed conformance run. */
export const EXIT_CODES: Record<MigErrorCode, number> = {
  MIG_INVALID_REQUEST: 10,
  MIG_UNAUTHORIZED: 11,
  MIG_FORBIDDEN: 12,
  MIG_NOT_FOUND: 13,
  MIG_UNSUPPORTED_CAPABILITY: 14,
  MIG_VERSION_MISMATCH: 15,
  MIG_TIMEOUT: 16,
  MIG_RATE_LIMITED: 17,
  MIG_BACKPRESSURE: 18,
  MIG_UNAVAILABLE: 19,
  MIG_INTERNAL: 20,
};

/** Exit status after Ctrl-C, as shells report a process ended by SIGINT. */
export const EXIT_INTERRUPTED = 130;

const colourful = (stream: NodeJS.WriteStream) => stream.isTTY === true && !process.env.NO_COLOR;

function paint(stream: NodeJS.WriteStream, code: number, text: string): string {
  return colourful(stream) ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export const dim = (text: string) => paint(process.stdout, 2, text);
export const bold = (text: string) => paint(process.stdout, 1, text);

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** A JSON value for a person: indented on a terminal, one line otherwise (so a pipe gets one document per line). */
export function printValue(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, colourful(process.stdout) ? 2 : undefined)}\n`);
}

/** Columns padded to their widest cell; the header row dimmed on a terminal. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${bold(line(header))}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
}

/** Prints a failure as one sentence on stderr and sets the exit status its MIG code names. */
export function reportFailure(command: string, err: unknown): void {
  const failure =
    err instanceof MigError
      ? err
      : new MigError("MIG_INTERNAL", err instanceof Error ? err.message : String(err), { retryable: false });
  const retry = failure.retryable ? " (retryable)" : "";
  process.stderr.write(`${paint(process.stderr, 31, `mig ${command}: ${failure.code}`)}: ${failure.message}${retry}\n`);
  process.exitCode = EXIT_CODES[failure.code];
}
