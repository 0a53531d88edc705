// The MCP servers one worker attaches, side by side: starts their connections, and offers the capability
// definitions of all their tools, prompts and resources as one list that changes when any server's lists do.
import type { CapabilityDefinition, Logger } from "../../runtime/mod.ts";
import { McpUpstream } from "./upstream.ts";
import type { UpstreamSpec } from "./upstream-config.ts";
import { UpstreamPrompts } from "./upstream-prompts.ts";
import { UpstreamTools } from "./upstream-tools.ts";

/** How long a starting worker waits for its servers' first tool lists before it registers without the missing ones. */
export const FIRST_CONNECTION_WAIT_MS = 15_000;

/** One server and the builders of its capability definitions. */
interface Attached {
  upstream: McpUpstream;
  tools: UpstreamTools;
  prompts: UpstreamPrompts;
}

export class McpUpstreams {
  private readonly listeners = new Set<() => void>();
  /** Capability ids already reported as taken (by a module or an earlier server), each logged once. */
  private readonly reported = new Set<string>();
  private notifying = false;

  private constructor(
    private readonly attached: Attached[],
    private readonly logger: Logger,
  ) {}

  /**
   * Starts a connection to each server and waits (at most `waitMs`) until each has answered once; servers that
   * have not by then join later, when they do (their capabilities then appear through `onChange`).
   */
  static async attach(specs: UpstreamSpec[], logger: Logger, waitMs = FIRST_CONNECTION_WAIT_MS): Promise<McpUpstreams> {
    const attached: Attached[] = [];
    const set = new McpUpstreams(attached, logger);
    for (const spec of specs) {
      const upstream = new McpUpstream(spec, logger, () => set.changed());
      attached.push({
        upstream,
        tools: new UpstreamTools(upstream, logger),
        prompts: new UpstreamPrompts(upstream, logger),
      });
    }
    for (const { upstream } of attached) upstream.start();
    const up = await Promise.all(attached.map(({ upstream }) => upstream.started(waitMs)));
    const late = attached.filter((_, i) => !up[i]).map(({ upstream }) => upstream.label);
    if (late.length > 0) {
      logger.warn(
        { upstreams: late, waited_ms: waitMs },
        "MCP upstreams not connected yet; their capabilities register once they answer",
      );
    }
    return set;
  }

  /**
   * Every attached server's tools, prompts and resources as capability definitions, in the order the servers were
   * given (each server's tools first). An id already in `taken` (a provider module's capability) or given before is
   * left out, with a log line.
   */
  definitions(taken: ReadonlySet<string> = new Set()): CapabilityDefinition[] {
    const ids = new Set(taken);
    const out: CapabilityDefinition[] = [];
    for (const { upstream, tools, prompts } of this.attached) {
      for (const definition of [...tools.definitions(), ...prompts.definitions()]) {
        const id = definition.descriptor.id;
        if (ids.has(id)) {
          if (!this.reported.has(id)) {
            this.reported.add(id);
            this.logger.warn(
              { capability: id, upstream: upstream.label },
              "MCP capability skipped: its id is taken by a provider module or another MCP server; give the server a --mcp-namespace (or namespace in the config)",
            );
          }
          continue;
        }
        ids.add(id);
        out.push(definition);
      }
    }
    return out;
  }

  /** Calls `listener` after a server's tools or prompts changed (several changes in one turn: once). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all(this.attached.map(({ upstream }) => upstream.close()));
  }

  private changed(): void {
    if (this.notifying) return;
    this.notifying = true;
    setImmediate(() => {
      this.notifying = false;
      for (const listener of [...this.listeners]) listener();
    });
  }
}
