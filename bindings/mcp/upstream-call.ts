// One INVOKE of an MCP tool: `tools/call` with the payload as arguments, progress notifications relayed as stream
// frames, tools that require tasks run as tasks (polled, their status changes relayed), and the result turned into
// the MIG output (or error). The invocation's signal aborts the call, which tells the server.
import type { StandardSchemaV1 } from "@modelcontextprotocol/client";
import type { InvocationContext } from "../../runtime/mod.ts";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import type { McpUpstream, UpstreamSession } from "./upstream.ts";
import { type McpRequestOrigin, migErrorOfToolResult } from "./upstream-errors.ts";

/** What a capability's handler needs to call its tool. */
export interface ToolCall {
  upstream: McpUpstream;
  /** The tool's MCP name (the capability id may spell it differently). */
  tool: string;
  /** The tool declares an object output schema: its output is its structuredContent. */
  declaresOutput: boolean;
  /** The tool requires task-augmented execution (`execution.taskSupport: "required"`). */
  asTask: boolean;
}

/**
 * Results are read as they come and checked here (the SDK's own result schemas would report a malformed answer
 * as a typed error too, but would also check structured output against the tool's schema, which the runtime
 * already does against the registered copy, with the MIG error the standard names).
 */
export const ANY_RESULT: StandardSchemaV1<unknown, unknown> = {
  "~standard": { version: 1, vendor: "mig", validate: (value: unknown) => ({ value }) },
};

/** The longest pause between two `tasks/get` polls, whatever the server's `pollInterval` asks for. */
const MAX_POLL_MS = 5_000;
const MIN_POLL_MS = 100;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export async function callTool(
  call: ToolCall,
  payload: JsonObject,
  context: InvocationContext,
  emit?: (frame: JsonObject) => Promise<void>,
): Promise<JsonObject> {
  const { upstream, tool } = call;
  const what = `tools/call of ${tool}`;
  const origin = (): McpRequestOrigin => ({ upstream: upstream.label, what });
  // The runtime's deadline fires first and answers the caller; the SDK's own timeout only ends a call left behind.
  const timeout = context.header.deadline_ms + 1_000;
  const meta = contextMeta(context);
  return upstream.run(what, context.signal, async (session, signal) => {
    const frames = emit ? new FrameRelay(emit) : undefined;
    if (call.asTask) {
      const result = await runAsTask(session, signal, call, payload, meta, timeout, frames);
      await frames?.drained();
      return outputOf(result, call, origin());
    }
    const token = frames ? session.listenProgress((progress) => frames.push(progressFrame(progress))) : undefined;
    try {
      const params = { name: tool, arguments: payload, _meta: token ? { ...meta, progressToken: token } : meta };
      const result = await session.client.request({ method: "tools/call", params }, ANY_RESULT, { signal, timeout });
      await frames?.drained();
      return outputOf(result, call, origin());
    } finally {
      if (token) session.stopProgress(token);
    }
  });
}

/**
 * The MIG context the server is told in the request's `_meta` (the standard's context that must cross): the
 * trace context under its MCP key, and the message, tenant, session and caller under `mig/`.
 */
export function contextMeta(context: InvocationContext): Record<string, unknown> {
  const { header, principal } = context;
  const meta: Record<string, unknown> = {
    "mig/message_id": header.message_id,
    "mig/tenant_id": header.tenant_id,
    "mig/subject": principal.subject,
  };
  if (header.session_id) meta["mig/session_id"] = header.session_id;
  if (header.traceparent) meta.traceparent = header.traceparent;
  return meta;
}

/**
 * Runs a tool that requires tasks: `tools/call` with `task` creates it, `tasks/get` is polled at the server's
 * `pollInterval` (each change of status or status message is a frame when streaming), and `tasks/result` gives the
 * tool's result once the task is terminal. A cancelled or timed-out invocation cancels the task (`tasks/cancel`).
 */
async function runAsTask(
  session: UpstreamSession,
  signal: AbortSignal,
  call: ToolCall,
  payload: JsonObject,
  meta: Record<string, unknown>,
  timeout: number,
  frames: FrameRelay | undefined,
): Promise<unknown> {
  const request = (method: string, params: Record<string, unknown>) =>
    session.client.request({ method, params }, ANY_RESULT, { signal, timeout });
  const created = await request("tools/call", {
    name: call.tool,
    arguments: payload,
    task: { ttl: Math.max(timeout, 60_000) },
    _meta: meta,
  });
  let task = taskOf((created as { task?: unknown } | null)?.task, call);
  try {
    frames?.push(taskFrame(task));
    while (!TERMINAL.has(task.status)) {
      await pause(Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, task.pollInterval ?? 1_000)), signal);
      const next = taskOf(await request("tasks/get", { taskId: task.taskId }), call);
      if (next.status !== task.status || next.statusMessage !== task.statusMessage) frames?.push(taskFrame(next));
      task = next;
    }
    if (task.status === "cancelled") {
      throw new MigError(
        "MIG_INTERNAL",
        `MCP server ${call.upstream.label} cancelled task ${task.taskId} of ${call.tool}`,
        {
          details: { upstream: call.upstream.label, task },
        },
      );
    }
    // Failed tasks answer with the tool's error result (isError) or a JSON-RPC error: both map below.
    return await request("tasks/result", { taskId: task.taskId });
  } catch (err) {
    if (signal.aborted) {
      session.client
        .request({ method: "tasks/cancel", params: { taskId: task.taskId } }, ANY_RESULT, { timeout: 5_000 })
        .catch(() => undefined);
    }
    throw err;
  }
}

interface TaskState {
  taskId: string;
  status: string;
  statusMessage?: string | undefined;
  pollInterval?: number | undefined;
}

function taskOf(value: unknown, call: ToolCall): TaskState {
  const task = value as Partial<TaskState> | null;
  if (!task || typeof task.taskId !== "string" || typeof task.status !== "string") {
    throw new MigError(
      "MIG_INTERNAL",
      `MCP server ${call.upstream.label} answered a task request of ${call.tool} without a task`,
      {
        details: { upstream: call.upstream.label, answer: value === undefined ? null : (value as JsonObject) },
      },
    );
  }
  return {
    taskId: task.taskId,
    status: task.status,
    statusMessage: typeof task.statusMessage === "string" ? task.statusMessage : undefined,
    pollInterval: typeof task.pollInterval === "number" ? task.pollInterval : undefined,
  };
}

const taskFrame = (task: TaskState): JsonObject => ({
  task: {
    task_id: task.taskId,
    status: task.status,
    ...(task.statusMessage === undefined ? {} : { status_message: task.statusMessage }),
  },
});

/** A progress notification as a frame: `{progress, total?, message?}`. */
function progressFrame(params: Record<string, unknown>): JsonObject {
  const frame: JsonObject = { progress: typeof params.progress === "number" ? params.progress : 0 };
  if (typeof params.total === "number") frame.total = params.total;
  if (typeof params.message === "string") frame.message = params.message;
  return frame;
}

/**
 * The MIG output of a tool result:
 * - `isError: true` → the MIG error of upstream-errors.ts;
 * - a tool with an object output schema → its `structuredContent`;
 * - otherwise `structuredContent` when it is an object, else `{content, text?, structured_content?}`: the content
 *   blocks as the server sent them, the text blocks joined by newlines, and a non-object structured value.
 * Anything that is not a tool result is MIG_INTERNAL.
 */
export function outputOf(result: unknown, call: ToolCall, origin: McpRequestOrigin): JsonObject {
  const garbage = (why: string) =>
    new MigError("MIG_INTERNAL", `MCP server ${origin.upstream} answered ${origin.what} with ${why}`, {
      details: { upstream: origin.upstream },
    });
  if (result === null || typeof result !== "object" || Array.isArray(result))
    throw garbage("something that is not a tool result");
  const { content, structuredContent, isError } = result as Record<string, unknown>;
  if (content !== undefined && !Array.isArray(content)) throw garbage("a content that is not a list");
  if (isError === true) throw migErrorOfToolResult({ content, structuredContent }, origin);
  if (isPlainObject(structuredContent)) return structuredContent;
  if (call.declaresOutput) throw garbage("no structuredContent, though the tool declares an output schema");
  const blocks = (content ?? []) as JsonObject[];
  const texts = blocks.filter((b) => b?.type === "text" && typeof b.text === "string").map((b) => b.text as string);
  const output: JsonObject = { content: blocks };
  if (texts.length > 0) output.text = texts.join("\n");
  if (structuredContent !== undefined) output.structured_content = structuredContent as JsonObject;
  return output;
}

function isPlainObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Waits `ms`, or rejects with the signal's reason when it fires first. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Sends frames in order, one at a time, each once the stream has room (emit waits for credit). A consumer slower
 * than the server's notifications gets the newest one waiting, not every one: frames are progress reports, and the
 * newest says all the older ones did, so memory stays bounded whatever the server sends.
 */
class FrameRelay {
  private waiting: JsonObject | undefined;
  private sending: Promise<void> = Promise.resolve();
  private busy = false;
  private ended = false;

  constructor(private readonly emit: (frame: JsonObject) => Promise<void>) {}

  push(frame: JsonObject): void {
    if (this.ended) return;
    if (this.busy) {
      this.waiting = frame;
      return;
    }
    this.busy = true;
    this.sending = this.send(frame);
  }

  private async send(first: JsonObject): Promise<void> {
    let frame: JsonObject | undefined = first;
    while (frame && !this.ended) {
      try {
        await this.emit(frame);
      } catch {
        this.ended = true; // the stream ended (cancel, deadline): the call's own abort follows
      }
      frame = this.waiting;
      this.waiting = undefined;
    }
    this.busy = false;
  }

  /** Resolves once every frame pushed so far has been handed to the stream. */
  drained(): Promise<void> {
    return this.sending;
  }
}
