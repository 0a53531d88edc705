// The MCP adapter manifest (the standard's §8 YAML, v0.1 and the v0.2 additions): its types and its JSON Schema.

/** A tool: an MCP tool name for a MIG capability. */
export interface McpToolMapping {
  /** The MCP tool name: `[A-Za-z0-9_.-]`, 1 to 128 characters (MCP 2025-11-25, SEP-986). */
  mcp_name: string;
  mig_capability: string;
  /** `unary` never streams; `server_stream` streams with progress notifications; unset: the capability decides. */
  mode?: "unary" | "server_stream";
  /** The call's deadline in ms, when the caller gives none. */
  timeout_ms?: number;
  title?: string;
  description?: string;
  /** v0.2: policy classification hints, shown in the tool's `_meta`. */
  policy_tags?: string[];
  /** v0.2: product meter grouping hint, shown in the tool's `_meta`. */
  billing_tier?: string;
}

/** A resource: the URIs that one capability reads, as a URI template (RFC 6570, level 1) or one fixed URI. */
export interface McpResourceMapping {
  mcp_uri_pattern: string;
  mig_capability: string;
  mode?: "unary";
  name?: string;
  title?: string;
  description?: string;
  mime_type?: string;
}

/** A prompt: an MCP prompt name for a capability that renders it from its arguments. */
export interface McpPromptMapping {
  mcp_name: string;
  mig_capability: string;
  mode?: "unary";
  title?: string;
  description?: string;
}

export interface McpManifest {
  /** `0.1` or `0.2`; YAML reads `version: 0.1` as a number, which is accepted too. */
  version: string | number;
  schema_version?: string;
  default_binding?: string;
  mappings?: {
    tools?: McpToolMapping[];
    resources?: McpResourceMapping[];
    prompts?: McpPromptMapping[];
  };
  policy?: {
    /** Whether tools may stream (progress notifications); default true. */
    allow_streaming_tools?: boolean;
    emit_event_notifications?: boolean;
    require_traceparent?: boolean;
    tenant_resolution?: string;
    /**
     * An extension of this runtime: also list the capabilities the manifest does not map, as tools named by their
     * ids (the default rule). Default false: with a manifest, the manifest alone names what MCP sees.
     */
    expose_unmapped_tools?: boolean;
  };
  billing?: { meter?: string; usage_scope?: string };
}

const CAPABILITY_ID = { type: "string", pattern: "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$", maxLength: 200 };
const MCP_NAME = { type: "string", pattern: "^[A-Za-z0-9_.-]{1,128}$" };
const TEXT = { type: "string", maxLength: 4096 };

/** JSON Schema (2020-12) of the manifest; bindings/mcp/manifest.ts validates every manifest it loads with it. */
export const MCP_MANIFEST_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $id: "schema://mig/mcp-manifest/v0.2",
  title: "MIG MCP adapter manifest",
  type: "object",
  required: ["version"],
  additionalProperties: false,
  properties: {
    version: {
      anyOf: [
        { type: "string", pattern: "^0\\.[12](\\.\\d+)?$" },
        { type: "number", enum: [0.1, 0.2] },
      ],
    },
    schema_version: { type: "string" },
    default_binding: { type: "string", enum: ["http", "nats", "grpc"] },
    mappings: {
      type: "object",
      additionalProperties: false,
      properties: {
        tools: {
          type: "array",
          items: {
            type: "object",
            required: ["mcp_name", "mig_capability"],
            additionalProperties: false,
            properties: {
              mcp_name: MCP_NAME,
              mig_capability: CAPABILITY_ID,
              mode: { type: "string", enum: ["unary", "server_stream"] },
              timeout_ms: { type: "integer", minimum: 1 },
              title: TEXT,
              description: TEXT,
              policy_tags: { type: "array", items: { type: "string" } },
              billing_tier: { type: "string" },
            },
          },
        },
        resources: {
          type: "array",
          items: {
            type: "object",
            required: ["mcp_uri_pattern", "mig_capability"],
            additionalProperties: false,
            properties: {
              mcp_uri_pattern: { type: "string", minLength: 1, maxLength: 1024 },
              mig_capability: CAPABILITY_ID,
              mode: { type: "string", enum: ["unary"] },
              name: { type: "string", minLength: 1, maxLength: 256 },
              title: TEXT,
              description: TEXT,
              mime_type: { type: "string", maxLength: 256 },
            },
          },
        },
        prompts: {
          type: "array",
          items: {
            type: "object",
            required: ["mcp_name", "mig_capability"],
            additionalProperties: false,
            properties: {
              mcp_name: MCP_NAME,
              mig_capability: CAPABILITY_ID,
              mode: { type: "string", enum: ["unary"] },
              title: TEXT,
              description: TEXT,
            },
          },
        },
      },
    },
    policy: {
      type: "object",
      additionalProperties: false,
      properties: {
        allow_streaming_tools: { type: "boolean" },
        emit_event_notifications: { type: "boolean" },
        require_traceparent: { type: "boolean" },
        tenant_resolution: { type: "string" },
        expose_unmapped_tools: { type: "boolean" },
      },
    },
    billing: {
      type: "object",
      additionalProperties: false,
      properties: { meter: { type: "string" }, usage_scope: { type: "string" } },
    },
  },
} as const;
