// The HTTP form of a deprecated capability version's answer: the Deprecation (RFC 9745) and Sunset (RFC 8594) headers,
// from the `mig.deprecation` entry the runtime put in the answer header's meta (docs/contracts.md).
import { DEPRECATION_META_KEY } from "../../runtime/mod.ts";

/** The headers for an answer whose header's meta says the version that served it is deprecated; {} otherwise. */
export function deprecationHeaders(answer: unknown): Record<string, string> {
  const meta = (answer as { header?: { meta?: Record<string, unknown> } } | undefined)?.header?.meta;
  const deprecation = meta?.[DEPRECATION_META_KEY] as { sunset?: unknown } | undefined;
  if (deprecation === undefined || deprecation === null || typeof deprecation !== "object") return {};
  // A structured-field date: deprecated as of now at the latest (a descriptor says whether, not since when).
  const headers: Record<string, string> = { deprecation: `@${Math.floor(Date.now() / 1000)}` };
  if (typeof deprecation.sunset === "string") headers.sunset = new Date(deprecation.sunset).toUTCString();
  return headers;
}
