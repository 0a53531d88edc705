// Reads a request body within the size limit and parses it as JSON exactly once.
import type { IncomingMessage } from "node:http";
import { MigError } from "../../runtime/errors.ts";

export class BodyTooLarge extends MigError {
  constructor(limit: number) {
    super("MIG_INVALID_REQUEST", `the request body is larger than ${limit} bytes; send a smaller payload`, {
      details: { max_body_bytes: limit },
    });
  }
}

export interface ParsedBody {
  value: unknown;
  bytes: number;
}

export function readJsonBody(req: IncomingMessage, limit: number): Promise<ParsedBody> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) return Promise.reject(new BodyTooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let failed = false;
    req.on("data", (chunk: Buffer) => {
      if (failed) return;
      bytes += chunk.length;
      if (bytes > limit) {
        failed = true;
        reject(new BodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", (err) => {
      if (!failed) reject(new MigError("MIG_INVALID_REQUEST", `the request body could not be read: ${err.message}`));
      failed = true;
    });
    req.on("end", () => {
      if (failed) return;
      const text = chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8");
      // An empty body counts as {} so that `curl -X POST -H 'X-Tenant-ID: acme' …/hello` works.
      if (text.trim() === "") return resolve({ value: {}, bytes });
      try {
        resolve({ value: JSON.parse(text), bytes });
      } catch (err) {
        reject(new MigError("MIG_INVALID_REQUEST", `the request body is not valid JSON (${(err as Error).message})`));
      }
    });
  });
}
