// Bare MCP baseline (run as its own process): the official TypeScript SDK's stateless Streamable HTTP server
// (`createMcpHandler` behind the Node adapter `toNodeHandler`, both protocol revisions), with nothing of MIG in front,
// serving the one tool `mig start` shows at /mcp for the demo capability: same name, same schemas, same result
// (the capability's output as structuredContent and as one JSON text block, with a `_meta` of the same size).
// Prints {"ready":true,"url":...} once listening.
//
//   node --import tsx test/bench/baseline-mcp.ts [--port 0]
import { randomUUID } from "node:crypto";
import http from "node:http";
import { parseArgs } from "node:util";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { type CallToolResult, createMcpHandler, Server, type Tool } from "@modelcontextprotocol/server";
import { exitWithParent } from "./exit-with-parent.ts";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" } } });

const TOOL = "observatory.models.infer";
const tool: Tool = {
  name: TOOL,
  description: "MIG capability observatory.models.infer 1.0.0 (unary, server_stream)",
  inputSchema: { type: "object", properties: { input: { type: "string" } }, required: ["input"] },
  outputSchema: { type: "object", properties: { result: { type: "string" } }, required: ["result"] },
};

/** What the demo provider answers (runtime/provider/demo-provider.ts), wrapped as the runtime's /mcp wraps it. */
function inferResult(args: Record<string, unknown>): CallToolResult {
  const output = { result: "ok", echo: args, capability: TOOL, delivery_qos: "at_least_once" };
  return {
    content: [{ type: "text", text: JSON.stringify(output) }],
    structuredContent: output,
    _meta: { "mig/message_id": randomUUID(), "mig/capability": TOOL },
  };
}

const handler = createMcpHandler(
  () => {
    const server = new Server({ name: "bare-mcp", version: "1.0.0" }, { capabilities: { tools: {} } });
    server.setRequestHandler("tools/list", () => ({ tools: [tool] }));
    server.setRequestHandler("tools/call", (request) => {
      if (request.params.name !== TOOL) throw new Error(`no tool is named ${request.params.name}`);
      return server.projectCallToolResult(inferResult(request.params.arguments ?? {}), undefined);
    });
    return server;
  },
  { legacy: "stateless" },
);
const serve = toNodeHandler(handler);

const httpServer = http.createServer((req, res) => {
  if (req.url !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  void serve(req, res);
});

httpServer.listen(Number(values.port), "127.0.0.1", () => {
  const address = httpServer.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ ready: true, url: `http://127.0.0.1:${port}/mcp` })}\n`);
});
exitWithParent();
process.on("SIGTERM", () => httpServer.close(() => process.exit(0)));
