// Reads a request body within the size and nesting limits and parses it as JSON exactly once; only JSON
// bodies are read, and a refused body is read to its end (within a bound) so that its client gets the answer.
import type { IncomingMessage } from "node:http";
import { parseJsonLimited } from "../../runtime/mod.ts";
import { MigError, publicCause } from "../../schemas/errors.ts";

export class BodyTooLarge extends MigError {
  constructor(limit: number) {
    super("MIG_INVALID_REQUEST", `the request body is larger than ${limit} bytes; send a smaller payload`, {
      details: { max_body_bytes: limit },
    });
  }
}

/** A body that is not JSON: answered 415 (it is not executed, whatever it holds). */
export class UnsupportedContentType extends MigError {
  constructor(given: string | undefined) {
    super(
      "MIG_INVALID_REQUEST",
      given === undefined
        ? "the request body has no content-type; send it as content-type: application/json"
        : `content-type ${JSON.stringify(given.slice(0, 100))} is not accepted; send the body as content-type: application/json`,
      { details: { expected_content_type: "application/json" } },
    );
  }
}

export interface ParsedBody {
  value: unknown;
  bytes: number;
}

export interface BodyLimits {
  maxBytes: number;
  maxDepth: number;
}

/** application/json or application/<anything>+json, with any parameters (charset). */
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;.*)?$/i;

/**
 * Refuses, before reading it, a body that is not declared JSON or is declared too large. A cross-site form
 * or text/plain POST (which a browser sends without asking) is thus never executed. A missing content-type
 * passes here; readJsonBody then accepts it only for an empty body, so that
 * `curl -X POST -H 'X-Tenant-ID: acme' …/hello` works.
 */
export function checkBodyHeaders(req: IncomingMessage, maxBytes: number): void {
  const type = req.headers["content-type"];
  if (type !== undefined && !JSON_TYPE.test(type.trim())) throw new UnsupportedContentType(type);
  if (Number(req.headers["content-length"]) > maxBytes) throw new BodyTooLarge(maxBytes);
}

export function readJsonBody(req: IncomingMessage, limits: BodyLimits): Promise<ParsedBody> {
  const { maxBytes } = limits;
  const declared = Number(req.headers["content-length"]);
  if (declared > maxBytes) return Promise.reject(new BodyTooLarge(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const stop = (err: MigError) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      // Not read any further here: the caller drains what is left (bounded) before it answers.
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) stop(new BodyTooLarge(maxBytes));
      else chunks.push(chunk);
    };
    const onError = (err: Error) =>
      stop(new MigError("MIG_INVALID_REQUEST", `the request body could not be read: ${publicCause(err)}`));
    const onEnd = () => {
      const text = chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8");
      // An empty body counts as {} so that `curl -X POST -H 'X-Tenant-ID: acme' …/hello` works.
      if (text.trim() === "") return resolve({ value: {}, bytes });
      if (req.headers["content-type"] === undefined) return reject(new UnsupportedContentType(undefined));
      try {
        resolve({ value: parseJsonLimited(text, limits.maxDepth), bytes });
      } catch (err) {
        reject(err);
      }
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
}

/**
 * Reads and discards what is left of a request body, at most `maxBytes` of it, so that the answer to a
 * refused request reaches its client: closing a socket with unread input makes the kernel reset the
 * connection, and the client sees EPIPE or ECONNRESET instead of the answer. Resolves true when the body
 * ended within the bound; false when it is larger (or the connection broke), and the connection must close.
 * The time it may take is bounded by the request timeout (MIG_HTTP_REQUEST_TIMEOUT_MS).
 */
export function drainBody(req: IncomingMessage, maxBytes: number): Promise<boolean> {
  if (req.complete) return Promise.resolve(true);
  if (req.destroyed) return Promise.resolve(false);
  const declared = Number(req.headers["content-length"]);
  if (declared > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let bytes = 0;
    const done = (ended: boolean) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onBroken);
      req.off("close", onBroken);
      if (!ended) req.pause();
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) done(false);
    };
    const onEnd = () => done(true);
    const onBroken = () => done(req.complete);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onBroken);
    req.on("close", onBroken);
    req.resume();
  });
}
