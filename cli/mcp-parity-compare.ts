// How `mig mcp parity` judges one tool: the server's own answer against the answer through MIG, by the rule of
// docs/mcp.md ("mig mcp parity"): the part of each result that carries the tool's answer, `_meta` left out, object
// keys in any order, arrays in order unless the output schema makes them sets (`uniqueItems`).

/** One side's call: the tool result as it came, or why there was none. */
export type CallOutcome = { result: Record<string, unknown> } | { error: string };

export type Verdict =
  | { status: "equal"; detail: string }
  | { status: "different"; detail: string }
  | { status: "failed"; detail: string };

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * The verdict on a tool: `failed` when a call got no tool result (a JSON-RPC error, a transport failure, a timeout);
 * `different` when one side answered `isError` and the other did not, or the answers differ; `equal` otherwise
 * (with `compare: false`, as soon as both succeeded).
 */
export function judge(
  direct: CallOutcome,
  throughMig: CallOutcome,
  options: { compare: boolean; outputSchema?: unknown; ignore?: readonly string[] },
): Verdict {
  if ("error" in direct || "error" in throughMig) {
    const parts = [
      "error" in direct ? `directly: ${direct.error}` : undefined,
      "error" in throughMig ? `through MIG: ${throughMig.error}` : undefined,
    ].filter(Boolean);
    return { status: "failed", detail: parts.join("; ") };
  }
  const directError = direct.result.isError === true;
  const migError = throughMig.result.isError === true;
  if (directError !== migError) {
    const text = (result: Record<string, unknown>) => firstText(result) ?? "";
    return {
      status: "different",
      detail: directError
        ? `directly an error result (${text(direct.result)}), through MIG a success`
        : `directly a success, through MIG an error result (${text(throughMig.result)})`,
    };
  }
  if (!options.compare) return { status: "equal", detail: "both succeeded (compare: false)" };
  const ignore = new Set(options.ignore);
  if (directError) {
    const difference = firstDifference(
      errorView(direct.result),
      migErrorView(throughMig.result),
      "",
      undefined,
      ignore,
    );
    return difference
      ? { status: "different", detail: `error result ${difference}` }
      : { status: "equal", detail: "both answered the same error result" };
  }
  const structured = isObject(direct.result.structuredContent);
  const schema = structured ? options.outputSchema : undefined;
  const difference = firstDifference(
    directView(direct.result),
    migView(throughMig.result, structured),
    structured ? "structuredContent" : "content",
    schema,
    ignore,
  );
  return difference
    ? { status: "different", detail: difference }
    : { status: "equal", detail: structured ? "same structuredContent" : "same content" };
}

/** What a tool answered: its structuredContent when that is an object, else its content (and any other structure). */
function directView(result: Record<string, unknown>): unknown {
  if (isObject(result.structuredContent)) return result.structuredContent;
  return result.structuredContent === undefined
    ? (result.content ?? [])
    : { content: result.content ?? [], structured: result.structuredContent };
}

/**
 * What the same answer is through MIG: the capability's output, MIG's structuredContent. A tool that answered an
 * object keeps it as the output; any other answer is carried as `{content, text?, structured_content?}`.
 */
function migView(result: Record<string, unknown>, structured: boolean): unknown {
  const output = result.structuredContent;
  if (structured || !isObject(output)) return output;
  return output.structured_content === undefined
    ? (output.content ?? [])
    : { content: output.content ?? [], structured: output.structured_content };
}

/** A tool's error result, compared by its content (and structure). */
function errorView(result: Record<string, unknown>): unknown {
  return { content: result.content ?? [], structuredContent: result.structuredContent };
}

/** The server's error result as MIG keeps it: `details.tool_error` of the MIG error the gateway answered. */
function migErrorView(result: Record<string, unknown>): unknown {
  const meta = isObject(result._meta) ? result._meta : {};
  const error = isObject(meta["mig/error"]) ? meta["mig/error"] : {};
  const details = isObject(error.details) ? error.details : {};
  const original = isObject(details.tool_error) ? details.tool_error : {};
  return { content: original.content ?? [], structuredContent: original.structuredContent };
}

function firstText(result: Record<string, unknown>): string | undefined {
  const blocks = Array.isArray(result.content) ? result.content : [];
  const text = blocks.find((b) => isObject(b) && typeof b.text === "string") as { text: string } | undefined;
  return text ? shorten(text.text, 120) : undefined;
}

/**
 * Where two answers first differ, as "path: direct ≠ through MIG", or undefined when they are equal. `_meta` is
 * skipped at any depth (it carries each side's own context), an undefined member equals a missing one, object keys
 * are unordered, an array the schema marks `uniqueItems` is compared as a set, and a path in `ignore` is not compared.
 */
export function firstDifference(
  a: unknown,
  b: unknown,
  path: string,
  schema: unknown,
  ignore: ReadonlySet<string> = new Set(),
): string | undefined {
  const at = path || "result";
  if (ignore.has(at)) return undefined;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${at}: ${a.length} items ≠ ${b.length} items`;
    const items = isObject(schema) ? schema.items : undefined;
    if (isObject(schema) && schema.uniqueItems === true) {
      const rest = [...b];
      for (const [i, item] of a.entries()) {
        const match = rest.findIndex((other) => firstDifference(item, other, "", items) === undefined);
        if (match < 0)
          return `${at}[${i}]: ${shorten(JSON.stringify(item), 80)} is not among ${at}'s items through MIG`;
        rest.splice(match, 1);
      }
      return undefined;
    }
    for (let i = 0; i < a.length; i++) {
      const difference = firstDifference(a[i], b[i], `${at}[${i}]`, items, ignore);
      if (difference) return difference;
    }
    return undefined;
  }
  if (isObject(a) && isObject(b)) {
    const properties = isObject(schema) && isObject(schema.properties) ? schema.properties : {};
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((key) => key !== "_meta").sort();
    for (const key of keys) {
      const difference = firstDifference(a[key], b[key], `${at}.${key}`, properties[key], ignore);
      if (difference) return difference;
    }
    return undefined;
  }
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return undefined;
  if (typeof a === "string" && typeof b === "string") return `${at}: ${aroundDifference(a, b)}`;
  return `${at}: ${shown(a)} ≠ ${shown(b)}`;
}

function shown(value: unknown): string {
  return value === undefined ? "missing" : shorten(JSON.stringify(value), 80);
}

/** Two strings shown from a little before their first different character, so that the difference is in sight. */
function aroundDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const from = Math.max(0, i - 20);
  const part = (s: string) => `${from > 0 ? "…" : ""}${shorten(JSON.stringify(s.slice(from)).slice(1, -1), 60)}`;
  return `"${part(a)}" ≠ "${part(b)}"`;
}

function shorten(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ");
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
