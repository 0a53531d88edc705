// The dependency rules between the top-level folders, read from the imports of every source file (type-only
// imports included): a forbidden arrow fails here with the file and the import that drew it.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/process.ts";

const SOURCE_FOLDERS = ["schemas", "actors", "runtime", "bindings", "conformance"];

/** One import of ours: the importing file and the imported file, both relative to the project root. */
interface Edge {
  from: string;
  to: string;
}

/** A rule: files under `folder` may import files of ours only where `allowed` says so. */
interface Rule {
  name: string;
  applies: (from: string) => boolean;
  allowed: (from: string, to: string) => boolean;
}

const within = (folder: string) => (path: string) => path === folder || path.startsWith(`${folder}/`);
const bindingOf = (path: string) => (path.startsWith("bindings/") ? path.split("/")[1] : undefined);

const RULES: Rule[] = [
  {
    name: "schemas/ imports nothing of ours but schemas/",
    applies: within("schemas"),
    allowed: (_from, to) => within("schemas")(to),
  },
  {
    name: "conformance/ imports only conformance/ and schemas/ (it runs against any MIG endpoint)",
    applies: within("conformance"),
    allowed: (_from, to) => within("conformance")(to) || within("schemas")(to),
  },
  {
    name: "a binding never imports a sibling binding",
    applies: within("bindings"),
    allowed: (from, to) => !within("bindings")(to) || bindingOf(to) === bindingOf(from),
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
      { path: "schemas/envelopes.ts", source: 'import { MigError } from "../runtime/errors.ts";' },
      { path: "bindings/grpc/server.ts", source: 'import type { HttpBinding } from "../http/server.ts";' },
      { path: "conformance/run.ts", source: 'import { loadConfig } from "../runtime/config.ts";' },
    ]);
    expect(violations(drawn)).toHaveLength(3);
  });

  it("holds for every source file", () => {
    expect(violations(edges)).toEqual([]);
  });
});
