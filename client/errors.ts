// The client's errors: every failure reaches the caller as a MigError with a code and a sentence a person can act on,
// whatever the transport, including the ones no server sent (unreachable, garbage, a connection closed mid-stream).
import { MigError } from "../schemas/errors.ts";

export { MigError };

/** The first line of a library's or the system's error, short enough for a sentence. */
function causeOf(err: unknown): string {
  if (err instanceof Error) {
    const inner = (err as { cause?: unknown }).cause;
    const own = err.message.split("\n", 1)[0] ?? "";
    if (inner instanceof Error && inner.message && !own.includes(inner.message)) return `${own}: ${inner.message}`;
    const code = (err as { code?: unknown }).code;
    return own || (typeof code === "string" ? code : err.name);
  }
  return String(err);
}

/** The server could not be reached or the connection failed before an answer: retryable. */
export function unreachable(url: string, err: unknown): MigError {
  return new MigError(
    "MIG_UNAVAILABLE",
    `could not reach the MIG server at ${url} (${causeOf(err)}); check that it is running and that the URL is right`,
    { retryable: true, details: { url, cause: causeOf(err) } },
  );
}

/** The server answered, but not with a MIG envelope: a proxy's page, another service, a broken body. */
export function notMigAnswer(url: string, what: string, sample?: string): MigError {
  const shown = sample === undefined ? "" : `: ${JSON.stringify(sample.slice(0, 120))}`;
  return new MigError(
    "MIG_INTERNAL",
    `the server at ${url} answered ${what}, which is not a MIG answer${shown}; check that the URL names a MIG endpoint`,
    { retryable: false, details: { url } },
  );
}

/** The wire closed while the caller waited for more (a stream's terminal frame, a subscription's events). */
export function closedEarly(url: string, waiting: string): MigError {
  return new MigError("MIG_UNAVAILABLE", `the connection to ${url} closed while ${waiting}; retry`, {
    retryable: true,
    details: { url },
  });
}

/** The error of an aborted call: the client's deadline (a MIG_TIMEOUT reason), or the caller's own abort. */
export function abortError(signal: AbortSignal): MigError {
  if (signal.reason instanceof MigError) return signal.reason;
  return new MigError("MIG_TIMEOUT", "the call was cancelled by its caller", {
    retryable: false,
    details: { cancelled: true },
  });
}

/** The MigError in an error envelope `{header, error}`, or undefined when the body is not one. */
export function envelopeError(body: unknown): MigError | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const error = (body as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return undefined;
  if (!MigError.isCode((error as { code?: unknown }).code)) return undefined;
  return MigError.fromBody(error as Record<string, unknown>);
}
