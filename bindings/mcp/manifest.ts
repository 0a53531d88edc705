// The names MCP sees for MIG capabilities: the adapter manifest (YAML, checked against schemas/mcp-manifest.ts) or,
// without one, the default rule that a capability is the tool named by its own id.
import { readFileSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse as parseYaml } from "yaml";
import {
  MCP_MANIFEST_SCHEMA,
  type McpManifest,
  type McpPromptMapping,
  type McpResourceMapping,
  type McpToolMapping,
} from "../../schemas/mcp-manifest.ts";
import type { CapabilityDescriptor } from "../../schemas/types.ts";

/** MCP tool names (2025-11-25, SEP-986): a capability id is one whenever it is at most 128 characters long. */
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Reads and checks a manifest file; a manifest that is not valid stops the start with a sentence naming the problem. */
export function loadManifest(path: string): McpManifest {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`MIG_MCP_MANIFEST: cannot read ${path}: ${(err as Error).message}`);
  }
  return parseManifest(text, path);
}

export function parseManifest(text: string, source = "the manifest"): McpManifest {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    throw new Error(`${source} is not YAML: ${(err as Error).message}`);
  }
  const validate = new Ajv2020({ allErrors: true, strict: false }).compile(MCP_MANIFEST_SCHEMA);
  if (!validate(document)) {
    const problems = (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}`);
    throw new Error(`${source} is not an MCP adapter manifest (schemas/mcp-manifest.ts): ${problems.join("; ")}`);
  }
  const manifest = document as McpManifest;
  const names = new Set<string>();
  for (const tool of manifest.mappings?.tools ?? []) {
    if (names.has(tool.mcp_name)) throw new Error(`${source}: tool ${tool.mcp_name} is mapped twice`);
    names.add(tool.mcp_name);
  }
  return manifest;
}

/** A tool as the MCP side names it, and what it runs. */
export interface ToolEntry {
  name: string;
  capability: string;
  /** The manifest's entry, when the manifest named the tool. */
  mapping?: McpToolMapping;
}

/**
 * Which capabilities MCP sees, and under which names. Without a manifest every capability is a tool whose name is
 * its id: ids are dot-separated `[A-Za-z0-9_-]` tokens, all valid tool name characters, so the rule is the identity
 * and reverses itself; an id longer than 128 characters needs a manifest entry. With a manifest, its tools,
 * resources and prompts (and the unmapped capabilities too when `policy.expose_unmapped_tools`).
 */
export class McpSurface {
  private readonly toolsByName = new Map<string, McpToolMapping>();
  private readonly toolByCapability = new Map<string, McpToolMapping>();
  /** Capabilities the manifest maps to a resource or a prompt: not tools by the default rule. */
  private readonly mappedElsewhere = new Set<string>();
  readonly resources: readonly McpResourceMapping[];
  readonly prompts: readonly McpPromptMapping[];

  constructor(readonly manifest?: McpManifest) {
    for (const tool of manifest?.mappings?.tools ?? []) {
      this.toolsByName.set(tool.mcp_name, tool);
      if (!this.toolByCapability.has(tool.mig_capability)) this.toolByCapability.set(tool.mig_capability, tool);
    }
    this.resources = manifest?.mappings?.resources ?? [];
    this.prompts = manifest?.mappings?.prompts ?? [];
    for (const entry of [...this.resources, ...this.prompts]) this.mappedElsewhere.add(entry.mig_capability);
  }

  /** Whether names not in the manifest follow the default rule. */
  private get defaultRule(): boolean {
    return this.manifest === undefined || this.manifest.policy?.expose_unmapped_tools === true;
  }

  get allowStreaming(): boolean {
    return this.manifest?.policy?.allow_streaming_tools !== false;
  }

  get requireTraceparent(): boolean {
    return this.manifest?.policy?.require_traceparent === true;
  }

  get hasResources(): boolean {
    return this.resources.length > 0;
  }

  get hasPrompts(): boolean {
    return this.prompts.length > 0;
  }

  /** The tools of the capabilities a caller sees (DISCOVER's answer), sorted by name: a stable order. */
  tools(
    visible: readonly Partial<CapabilityDescriptor>[],
  ): (ToolEntry & { descriptor: Partial<CapabilityDescriptor> })[] {
    const tools: (ToolEntry & { descriptor: Partial<CapabilityDescriptor> })[] = [];
    // DISCOVER lists each version of a capability, the highest first; a tool is the capability, so its first one (an
    // unpinned call runs that version too).
    const seen = new Set<string>();
    for (const descriptor of visible) {
      const id = descriptor.id;
      if (id === undefined || seen.has(id)) continue;
      seen.add(id);
      for (const mapping of this.manifest?.mappings?.tools ?? []) {
        if (mapping.mig_capability === id) tools.push({ name: mapping.mcp_name, capability: id, mapping, descriptor });
      }
      if (this.defaultRule && !this.toolByCapability.has(id) && !this.mappedElsewhere.has(id) && TOOL_NAME.test(id))
        tools.push({ name: id, capability: id, descriptor });
    }
    return tools.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The capability a tool name runs, or undefined for a name that no rule gives. */
  tool(name: string): ToolEntry | undefined {
    const mapping = this.toolsByName.get(name);
    if (mapping) return { name, capability: mapping.mig_capability, mapping };
    if (!this.defaultRule || !TOOL_NAME.test(name)) return undefined;
    if (this.toolByCapability.has(name) || this.mappedElsewhere.has(name)) return undefined;
    return { name, capability: name };
  }

  prompt(name: string): McpPromptMapping | undefined {
    return this.prompts.find((prompt) => prompt.mcp_name === name);
  }
}
