// Loads provider modules for `mig worker`: every CapabilityDefinition a module exports, default (one or a list) or named.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { CapabilityDefinition } from "./provider.ts";

function isDefinition(value: unknown): value is CapabilityDefinition {
  if (value === null || typeof value !== "object") return false;
  const candidate = value as Partial<CapabilityDefinition>;
  return typeof candidate.handler === "function" && typeof candidate.descriptor?.id === "string";
}

export async function loadProviderModules(paths: string[], cwd = process.cwd()): Promise<CapabilityDefinition[]> {
  const found: CapabilityDefinition[] = [];
  for (const path of paths) {
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(resolve(cwd, path)).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`provider module ${path} could not be loaded: ${(err as Error).message}`);
    }
    const before = found.length;
    for (const value of Object.values(module)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (isDefinition(item) && !found.includes(item)) found.push(item);
      }
    }
    if (found.length === before) {
      throw new Error(
        `provider module ${path} exports no capability: export defineCapability(...) results, as default (one or a list) or named`,
      );
    }
  }
  const ids = new Set<string>();
  for (const definition of found) {
    if (ids.has(definition.descriptor.id))
      throw new Error(`capability ${definition.descriptor.id} is exported twice by the worker's modules`);
    ids.add(definition.descriptor.id);
  }
  return found;
}
