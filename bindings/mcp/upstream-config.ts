// Which MCP servers a worker attaches as providers: the `--mcp`, `--mcp-url` and `--mcp-namespace` flags and the
// YAML file of `--mcp-config` (MIG_MCP_CONFIG), read into one checked list of upstream specs.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { checkDottedName } from "../../runtime/mod.ts";

/** A server the worker starts itself and talks to over its standard input and output. */
export interface StdioTransportSpec {
  kind: "stdio";
  command: string;
  args: string[];
  /** Added to the small environment the MCP SDK passes on by default (PATH, HOME, …): the worker's secrets stay. */
  env: Record<string, string>;
  cwd?: string | undefined;
}

/** A server that already listens for Streamable HTTP. */
export interface HttpTransportSpec {
  kind: "http";
  url: URL;
  headers: Record<string, string>;
}

export interface UpstreamSpec {
  /** The capability ids' prefix; absent: derived from the name the server gives when it first answers. */
  namespace?: string | undefined;
  /** Where the spec came from, for messages: `--mcp`, `--mcp-url`, `upstreams.yaml: upstreams[1]`. */
  origin: string;
  transport: StdioTransportSpec | HttpTransportSpec;
  /** Scopes a caller needs for every capability of this server (none by default). */
  auth_scopes: string[];
}

/** The worker's MCP options as commander hands them over. */
export interface UpstreamOptions {
  mcp?: string | undefined;
  mcpUrl?: string | undefined;
  mcpNamespace?: string | undefined;
  mcpConfig?: string | undefined;
}

/** Every upstream the options name: the one of the flags first, then the config file's, in its order. */
export function upstreamSpecs(options: UpstreamOptions): UpstreamSpec[] {
  const specs = upstreamFromFlags(options);
  if (options.mcpConfig) specs.push(...readUpstreamFile(options.mcpConfig));
  const seen = new Map<string, string>();
  for (const spec of specs) {
    if (spec.namespace === undefined) continue;
    const other = seen.get(spec.namespace);
    if (other) throw new Error(`MCP namespace "${spec.namespace}" is given twice (${other} and ${spec.origin})`);
    seen.set(spec.namespace, spec.origin);
  }
  return specs;
}

function upstreamFromFlags(options: UpstreamOptions): UpstreamSpec[] {
  if (options.mcp !== undefined && options.mcpUrl !== undefined) {
    throw new Error("give --mcp or --mcp-url, not both; several MCP servers go into a --mcp-config file");
  }
  const namespace =
    options.mcpNamespace === undefined ? undefined : checkNamespace(options.mcpNamespace, "--mcp-namespace");
  if (options.mcp !== undefined) {
    const [command, ...args] = splitCommandLine(options.mcp, "--mcp");
    if (!command) throw new Error('--mcp needs the command that starts the MCP server, e.g. --mcp "node server.js"');
    return [{ namespace, origin: "--mcp", transport: { kind: "stdio", command, args, env: {} }, auth_scopes: [] }];
  }
  if (options.mcpUrl !== undefined) {
    const url = httpUrl(options.mcpUrl, "--mcp-url");
    return [{ namespace, origin: "--mcp-url", transport: { kind: "http", url, headers: {} }, auth_scopes: [] }];
  }
  if (namespace !== undefined) throw new Error("--mcp-namespace names the server of --mcp or --mcp-url; give one");
  return [];
}

/**
 * Splits a command line into words as a POSIX shell would, without running one: blanks separate words, single
 * quotes keep everything, double quotes keep everything but `\"` and `\\`, a backslash outside quotes keeps the next
 * character. No variables, globs or redirections: the words go to the program as they are.
 */
export function splitCommandLine(line: string, where = "command line"): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === "\\" && (line[i + 1] === '"' || line[i + 1] === "\\")) word += line[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`${where}: the quote ${quote} is not closed in ${JSON.stringify(line)}`);
  if (inWord) words.push(word);
  return words;
}

/**
 * Reads a config file of upstreams:
 *
 * ```yaml
 * upstreams:
 *   - namespace: everything                 # optional
 *     command: npx                          # stdio: the program…
 *     args: ["-y", "@modelcontextprotocol/server-everything"]
 *     env: { API_KEY: "${EVERYTHING_KEY}" } # ${NAME}: from the worker's environment
 *   - namespace: search
 *     url: https://search.example/mcp       # Streamable HTTP
 *     headers: { Authorization: "Bearer ${SEARCH_TOKEN}" }
 *     auth_scopes: ["search:use"]
 * ```
 */
export function readUpstreamFile(path: string, environment: NodeJS.ProcessEnv = process.env): UpstreamSpec[] {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`MCP config ${path} could not be read: ${(err as Error).message}`);
  }
  const list = isRecord(document) ? document.upstreams : undefined;
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`MCP config ${path} needs a non-empty list "upstreams:" (each with command or url)`);
  }
  return list.map((entry, i) => upstreamOfEntry(entry, `${path}: upstreams[${i}]`, environment));
}

const ENTRY_KEYS = new Set(["namespace", "command", "args", "env", "cwd", "url", "headers", "auth_scopes"]);

function upstreamOfEntry(entry: unknown, origin: string, environment: NodeJS.ProcessEnv): UpstreamSpec {
  if (!isRecord(entry)) throw new Error(`${origin} must be a map with command or url`);
  for (const key of Object.keys(entry)) {
    if (!ENTRY_KEYS.has(key)) throw new Error(`${origin}: unknown key "${key}" (known: ${[...ENTRY_KEYS].join(", ")})`);
  }
  const namespace =
    entry.namespace === undefined ? undefined : checkNamespace(text(entry.namespace, `${origin}.namespace`), origin);
  const auth_scopes = entry.auth_scopes === undefined ? [] : texts(entry.auth_scopes, `${origin}.auth_scopes`);
  if ((entry.command === undefined) === (entry.url === undefined)) {
    throw new Error(`${origin} needs exactly one of command (a server started over stdio) or url (Streamable HTTP)`);
  }
  if (entry.command !== undefined) {
    if (entry.headers !== undefined) throw new Error(`${origin}: headers go with url, not command`);
    const transport: StdioTransportSpec = {
      kind: "stdio",
      command: text(entry.command, `${origin}.command`),
      args: entry.args === undefined ? [] : texts(entry.args, `${origin}.args`),
      env: entry.env === undefined ? {} : expanded(entry.env, `${origin}.env`, environment),
      cwd: entry.cwd === undefined ? undefined : text(entry.cwd, `${origin}.cwd`),
    };
    return { namespace, origin, transport, auth_scopes };
  }
  for (const key of ["args", "env", "cwd"]) {
    if (entry[key] !== undefined) throw new Error(`${origin}: ${key} goes with command, not url`);
  }
  const transport: HttpTransportSpec = {
    kind: "http",
    url: httpUrl(text(entry.url, `${origin}.url`), `${origin}.url`),
    headers: entry.headers === undefined ? {} : expanded(entry.headers, `${origin}.headers`, environment),
  };
  return { namespace, origin, transport, auth_scopes };
}

function checkNamespace(value: string, where: string): string {
  try {
    return checkDottedName(value, `MCP namespace (${where})`);
  } catch (err) {
    throw new Error(`${(err as Error).message}; use letters, digits, '-', '_', and '.' between parts`);
  }
}

function httpUrl(value: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where}: "${value}" is not a URL, e.g. http://127.0.0.1:3001/mcp`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`${where}: "${value}" is not an http:// or https:// URL`);
  }
  return url;
}

/** A map of strings whose `${NAME}` parts are read from the worker's environment (an unset one is an error). */
function expanded(value: unknown, where: string, environment: NodeJS.ProcessEnv): Record<string, string> {
  if (!isRecord(value)) throw new Error(`${where} must be a map of names to strings`);
  const out: Record<string, string> = {};
  for (const [key, raw] of Object.entries(value)) {
    out[key] = text(raw, `${where}.${key}`).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = environment[name];
      if (found === undefined)
        throw new Error(`${where}.${key} names \${${name}}, which is not set in the environment`);
      return found;
    });
  }
  return out;
}

function text(value: unknown, where: string): string {
  if (typeof value === "string" && value !== "") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new Error(`${where} must be a non-empty string`);
}

function texts(value: unknown, where: string): string[] {
  if (!Array.isArray(value)) throw new Error(`${where} must be a list of strings`);
  return value.map((item, i) => text(item, `${where}[${i}]`));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
