// The dependency rules of docs/ARCHITECTURE.md, read from the imports of every source file (type-only imports
// included): a forbidden arrow or an import circle fails here with the files and the import that drew it.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/process.ts";

const SOURCE_FOLDERS = ["schemas", "actors", "runtime", "bindings", "worker", "cli", "conformance", "client"];

/** One import of ours: the importing file and the imported file, both relative to the project root. */
interface Edge {
  from: string;
  to: string;
}

/**
 * The runtime's layers, lowest first: a file may import files of its own layer and of the layers below it, never
 * of one above. `runtime/core.ts` is the operations' view of the runtime; `runtime/runtime.ts` composes them all;
 * `runtime/mod.ts` is what the bindings see.
 */
const RUNTIME_LAYERS = [
  "runtime/protocol",
  "runtime/base",
  "runtime/bus",
  "runtime/store",
  "runtime/provider",
  "runtime/policy",
  "runtime/flow",
  "runtime/core.ts",
  "runtime/ops",
  "runtime/fleet",
  "runtime/runtime.ts",
  "runtime/mod.ts",
];

const within = (folder: string) => (path: string) => path === folder || path.startsWith(`${folder}/`);
const bindingOf = (path: string) => (path.startsWith("bindings/") ? path.split("/")[1] : undefined);
const layerOf = (path: string) => RUNTIME_LAYERS.findIndex((layer) => within(layer)(path));

/** A rule: files where `applies` holds may import files of ours only where `allowed` says so. */
interface Rule {
  name: string;
  applies: (from: string) => boolean;
  allowed: (from: string, to: string) => boolean;
}

const RULES: Rule[] = [
  {
    name: "schemas/ imports nothing of ours but schemas/",
    applies: within("schemas"),
    allowed: (_from, to) => within("schemas")(to),
  },
  {
    name: "actors/ imports only actors/ and schemas/ (machines, no I/O)",
    applies: within("actors"),
    allowed: (_from, to) => within("actors")(to) || within("schemas")(to),
  },
  {
    name: "conformance/ imports only conformance/ and schemas/ (it runs against any MIG endpoint)",
    applies: within("conformance"),
    allowed: (_from, to) => within("conformance")(to) || within("schemas")(to),
  },
  {
    name: "client/ imports only client/ and schemas/ (a caller installs it without the runtime)",
    applies: within("client"),
    allowed: (_from, to) => within("client")(to) || within("schemas")(to),
  },
  {
    name: "runtime/ imports runtime/, actors/ and schemas/ only: never a binding, the worker or the command line",
    applies: within("runtime"),
    allowed: (_from, to) => within("runtime")(to) || within("actors")(to) || within("schemas")(to),
  },
  {
    name: "every runtime file belongs to a layer of RUNTIME_LAYERS",
    applies: (from) => within("runtime")(from) && layerOf(from) < 0,
    allowed: () => false,
  },
  {
    name: "a runtime layer imports its own layer and the layers below it",
    applies: within("runtime"),
    allowed: (from, to) => !within("runtime")(to) || layerOf(to) <= layerOf(from),
  },
  {
    name: "a binding imports its own files, runtime/mod.ts and schemas/ only, never a sibling binding",
    applies: within("bindings"),
    allowed: (from, to) => bindingOf(to) === bindingOf(from) || to === "runtime/mod.ts" || within("schemas")(to),
  },
  {
    name: "worker/ imports runtime/, actors/, schemas/ and the NATS binding (whose queue groups its direct lane joins)",
    applies: within("worker"),
    allowed: (_from, to) => !within("bindings")(to) || bindingOf(to) === "nats",
  },
  {
    name: "only cli/ (the composition root) imports worker/ or cli/",
    applies: (from) => !within("cli")(from),
    allowed: (from, to) => !within("cli")(to) && (!within("worker")(to) || within("worker")(from)),
  },
];

// Every `import … from "x"`, `export … from "x"`, bare `import "x"` and `import("x")`, type-only ones included.
const SPECIFIER =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?\sfrom\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;

function importsOf(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(SPECIFIER)) found.push((match[1] ?? match[2] ?? match[3])!);
  return found;
}

function sourceFiles(folder: string): string[] {
  const entries = readdirSync(join(ROOT, folder), { withFileTypes: true });
  return entries.flatMap((entry) => {
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.(ts|mjs)$/.test(entry.name) ? [path] : [];
  });
}

/** The edges between our own files: relative specifiers resolved against the importing file. */
function edgesOf(files: { path: string; source: string }[]): Edge[] {
  const edges: Edge[] = [];
  for (const { path, source } of files) {
    for (const specifier of importsOf(source)) {
      if (!specifier.startsWith(".")) continue;
      edges.push({ from: path, to: relative(ROOT, resolve(ROOT, dirname(path), specifier)) });
    }
  }
  return edges;
}

function violations(edges: Edge[], rules: Rule[] = RULES): string[] {
  const found: string[] = [];
  for (const rule of rules) {
    for (const edge of edges) {
      if (rule.applies(edge.from) && !rule.allowed(edge.from, edge.to))
        found.push(`${rule.name}: ${edge.from} → ${edge.to}`);
    }
  }
  return found;
}

/** Every import circle, each as the files on it (Tarjan's strongly connected components of two or more files). */
function circles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (file: string) => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const to of next.get(file) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(file, Math.min(low.get(file)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(file, Math.min(low.get(file)!, index.get(to)!));
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1) found.push(component.sort());
  };
  for (const file of next.keys()) if (!index.has(file)) visit(file);
  return found;
}

describe("dependency rules between folders", () => {
  const files = SOURCE_FOLDERS.flatMap(sourceFiles).map((path) => ({
    path,
    source: readFileSync(join(ROOT, path), "utf8"),
  }));
  const edges = edgesOf(files);

  it("reads the imports it judges: type-only, re-exports and dynamic ones too", () => {
    expect(
      importsOf(
        'import type { A } from "./a.ts";\nexport { b } from "../b.ts";\nawait import("./c.ts");\nimport "./d.ts";',
      ),
    ).toEqual(["./a.ts", "../b.ts", "./c.ts", "./d.ts"]);
    expect(edges.length).toBeGreaterThan(300);
    expect(edges).toContainEqual({ from: "bindings/http/server.ts", to: "bindings/http/routes.ts" });
  });

  it("finds a forbidden arrow when one is drawn", () => {
    const drawn = edgesOf([
      { path: "schemas/envelopes.ts", source: 'import { MigError } from "../runtime/ops/invoke.ts";' },
      { path: "actors/stream.ts", source: 'import type { Logger } from "../runtime/base/logger.ts";' },
      { path: "bindings/grpc/server.ts", source: 'import type { HttpBinding } from "../http/server.ts";' },
      { path: "bindings/http/server.ts", source: 'import { invoke } from "../../runtime/ops/invoke.ts";' },
      { path: "conformance/harness.ts", source: 'import { loadConfig } from "../runtime/base/config.ts";' },
      { path: "runtime/fleet/fleet.ts", source: 'import { startNatsBinding } from "../../bindings/nats/server.ts";' },
      { path: "runtime/flow/stream-session.ts", source: 'import type { RuntimeCore } from "../core.ts";' },
      { path: "runtime/policy/policy.ts", source: 'import { invoke } from "../ops/invoke.ts";' },
      { path: "runtime/odd.ts", source: 'import { MigError } from "../schemas/errors.ts";' },
      { path: "runtime/ops/invoke.ts", source: 'import { WorkerHost } from "../../worker/host.ts";' },
      { path: "worker/host.ts", source: 'import { startHttpBinding } from "../bindings/http/server.ts";' },
    ]);
    expect(drawn).toHaveLength(11);
    // Each drawn arrow breaks at least one rule.
    expect(drawn.filter((edge) => violations([edge]).length === 0)).toEqual([]);
    // What is allowed stays allowed.
    const fine = edgesOf([
      { path: "bindings/http/server.ts", source: 'import type { MigRuntime } from "../../runtime/mod.ts";' },
      { path: "runtime/ops/invoke.ts", source: 'import type { RuntimeCore } from "../core.ts";' },
      { path: "worker/host.ts", source: 'import { startNatsBinding } from "../bindings/nats/server.ts";' },
      { path: "cli/main.ts", source: 'import { WorkerHost } from "../worker/host.ts";' },
    ]);
    expect(violations(fine)).toEqual([]);
  });

  it("finds an import circle when one is drawn, type-only imports included", () => {
    const drawn = edgesOf([
      { path: "runtime/ops/a.ts", source: 'import type { B } from "./b.ts";' },
      { path: "runtime/ops/b.ts", source: 'import { c } from "./c.ts";' },
      { path: "runtime/ops/c.ts", source: 'export { a } from "./a.ts";' },
      { path: "runtime/ops/d.ts", source: 'import { a } from "./a.ts";' },
    ]);
    expect(circles(drawn)).toEqual([["runtime/ops/a.ts", "runtime/ops/b.ts", "runtime/ops/c.ts"]]);
  });

  it("holds for every source file", () => {
    expect(violations(edges)).toEqual([]);
  });

  it("no source file imports itself back through others", () => {
    expect(circles(edges)).toEqual([]);
  });
});
