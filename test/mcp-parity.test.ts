// `mig mcp parity`: the real command against the real server-everything (every tool answers the same directly and
// through a throwaway MIG fleet), and against a test server with a tool that answers MIG callers differently; and
// the rules it builds arguments and compares answers by.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Tool } from "@modelcontextprotocol/client";
import { describe, expect, it } from "vitest";
import { argumentsFor, readArgsFile } from "../cli/mcp-parity-arguments.ts";
import { judge } from "../cli/mcp-parity-compare.ts";
import { ROOT } from "./helpers/process.ts";

const EVERYTHING = "node node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio";
const PARITY_SERVER = "node test/fixtures/mcp-parity-server.mjs";

/** Runs `mig mcp parity …` as a user would; resolves with its exit status and output, whatever the status. */
function parity(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "cli/mig.mjs"), "mcp", "parity", ...args],
      { cwd: ROOT, timeout: 180_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("mig mcp parity", () => {
  it("finds every tool of server-everything equal through MIG, and exits 0", async () => {
    const { code, stdout, stderr } = await parity(EVERYTHING, "--args", "test/fixtures/mcp-parity-everything.yaml");
    const lines = stdout.trim().split("\n");
    const rows = lines.slice(1, -1).map((line) => line.split(/\s{2,}/));
    expect(lines[0]!.split(/\s+/)).toEqual(["TOOL", "RESULT", "DETAIL"]);
    expect(rows.filter(([, result]) => result !== "equal")).toEqual([]);
    expect(rows.map(([tool]) => tool)).toEqual(
      expect.arrayContaining([
        "echo",
        "get-structured-content",
        "get-sum",
        "gzip-file-as-resource",
        "simulate-research-query",
        "trigger-long-running-operation",
      ]),
    );
    // The structured tool is compared by its structuredContent, the others by their content blocks.
    expect(rows.find(([tool]) => tool === "get-structured-content")![2]).toBe("same structuredContent");
    expect(rows.find(([tool]) => tool === "echo")![2]).toBe("same content");
    expect(lines.at(-1)).toBe(
      `OK: ${rows.length} tools, ${rows.length} equal, 0 different, 0 failed, 0 skipped (through MIG as everything.*)`,
    );
    expect(code, stderr).toBe(0);
  }, 180_000);

  it("names a tool that answers MIG callers differently, and exits non-zero", async () => {
    const { code, stdout } = await parity(
      PARITY_SERVER,
      "--args",
      "test/fixtures/mcp-parity-server-args.yaml",
      "--json",
    );
    expect(code).toBe(1);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ namespace: "parity", equal: 2, different: 1, failed: 0, skipped: 1 });
    expect(report.tools).toEqual([
      { tool: "dice", through: "parity.dice", status: "equal", detail: "both succeeded (compare: false)" },
      {
        tool: "pin-code",
        through: "parity.pin-code",
        status: "skipped",
        detail: expect.stringMatching(/^no arguments: \{"code":""\} from the schema is refused \(\/code must match/),
      },
      { tool: "same", through: "parity.same", status: "equal", detail: "same content" },
      {
        tool: "who-calls",
        through: "parity.who-calls",
        status: "different",
        detail: 'content[0].text: "a direct caller" ≠ "tenant parity, through MIG"',
      },
    ]);
  }, 120_000);

  it("without compare: false, a tool answering at random is different", async () => {
    const { code, stdout } = await parity(PARITY_SERVER, "--json");
    expect(code).toBe(1);
    const dice = JSON.parse(stdout).tools.find((t: { tool: string }) => t.tool === "dice");
    expect(dice).toMatchObject({ status: "different", detail: expect.stringMatching(/^content\[0\]\.text: "/) });
  }, 120_000);

  it("a server that does not start is reported, exit status 2", async () => {
    const { code, stderr } = await parity("node test/fixtures/no-such-server.mjs");
    expect(code).toBe(2);
    expect(stderr).toMatch(/^mig mcp parity: cannot reach the MCP server/);
  }, 60_000);
});

describe("the arguments of a tool", () => {
  const tool = (inputSchema: Record<string, unknown>) => ({ name: "t", inputSchema }) as Tool;

  it("come from the schema: defaults, then the simplest value of each required property", () => {
    expect(
      argumentsFor(
        tool({
          type: "object",
          properties: {
            kind: { type: "string", enum: ["b", "a"] },
            count: { type: "integer", minimum: 3 },
            label: { type: "string", minLength: 2 },
            flags: { type: "array", items: { type: "boolean" }, minItems: 1 },
            verbose: { type: "boolean", default: true },
            optional: { type: "string" },
          },
          required: ["kind", "count", "label", "flags"],
        }),
        undefined,
      ),
    ).toEqual({
      arguments: { verbose: true, kind: "b", count: 3, label: "aa", flags: [false] },
      source: "schema",
    });
  });

  it("come from the schema's examples first, and from the args file before anything", () => {
    const schema = { type: "object", properties: { q: { type: "string" } }, examples: [{ q: "from examples" }] };
    expect(argumentsFor(tool(schema), undefined)).toEqual({
      arguments: { q: "from examples" },
      source: "schema examples",
    });
    expect(argumentsFor(tool(schema), { arguments: { q: "from the file" } })).toEqual({
      arguments: { q: "from the file" },
      source: "args file",
    });
  });

  it("are none when no value can be built for a required property", () => {
    const skipped = argumentsFor(
      tool({ type: "object", properties: { ref: { $ref: "#/$defs/x" } }, required: ["ref"] }),
      undefined,
    );
    expect(skipped).toEqual({ skip: 'no arguments: no value can be built for the required property "ref"' });
  });
});

describe("the args file", () => {
  const file = (text: string) => {
    const path = join(mkdtempSync(join(tmpdir(), "mig-parity-")), "args.yaml");
    writeFileSync(path, text);
    return path;
  };

  it("reads arguments, compare and ignore, and names what it cannot use", () => {
    const entries = 'clock: { compare: false }\nref: { arguments: { id: 1 }, ignore: ["content[1].resource.text"] }\n';
    expect(readArgsFile(file(entries))).toEqual({
      clock: { compare: false },
      ref: { arguments: { id: 1 }, ignore: ["content[1].resource.text"] },
    });
    expect(() => readArgsFile(file("ref: { ignore: content }\n"))).toThrow(/ref: ignore must be a list of paths/);
    expect(() => readArgsFile(file("ref: { skip: true }\n"))).toThrow(/ref has skip; an entry holds arguments/);
    expect(() => readArgsFile(file("- echo\n"))).toThrow(/must map tool names to entries/);
  });
});

describe("the comparison rule", () => {
  const ok = (result: Record<string, unknown>) => ({ result });
  const text = (value: string) => ({ content: [{ type: "text", text: value }] });

  it("compares content with the content MIG carries, _meta aside", () => {
    const direct = ok({ ...text("hi"), _meta: { side: "direct" } });
    const through = ok({
      ...text('{"content":[…]}'),
      structuredContent: { content: [{ type: "text", text: "hi", _meta: { x: 1 } }], text: "hi" },
      _meta: { "mig/message_id": "m" },
    });
    expect(judge(direct, through, { compare: true })).toEqual({ status: "equal", detail: "same content" });
  });

  it("compares structuredContent, an array of unique items as a set", () => {
    const outputSchema = { type: "object", properties: { tags: { type: "array", uniqueItems: true } } };
    const direct = ok({ structuredContent: { tags: ["a", "b"], n: 1 } });
    const same = ok({ structuredContent: { n: 1, tags: ["b", "a"] } });
    const other = ok({ structuredContent: { n: 2, tags: ["b", "a"] } });
    expect(judge(direct, same, { compare: true, outputSchema }).status).toBe("equal");
    expect(judge(direct, other, { compare: true, outputSchema })).toEqual({
      status: "different",
      detail: "structuredContent.n: 1 ≠ 2",
    });
    expect(judge(direct, same, { compare: true }).status).toBe("different");
  });

  it("leaves out the paths an args entry ignores, and only those", () => {
    const resource = (when: string) =>
      ok({
        content: [
          { type: "text", text: "a resource" },
          { type: "resource", resource: { uri: "u", text: when } },
        ],
      });
    const through = (when: string) => ok({ structuredContent: { content: resource(when).result.content } });
    const ignore = ["content[1].resource.text"];
    expect(judge(resource("at 1"), through("at 2"), { compare: true })).toEqual({
      status: "different",
      detail: 'content[1].resource.text: "at 1" ≠ "at 2"',
    });
    expect(judge(resource("at 1"), through("at 2"), { compare: true, ignore }).status).toBe("equal");
    const otherUri = ok({
      structuredContent: {
        content: [
          { type: "text", text: "a resource" },
          { type: "resource", resource: { uri: "v", text: "y" } },
        ],
      },
    });
    expect(judge(resource("x"), otherUri, { compare: true, ignore })).toEqual({
      status: "different",
      detail: 'content[1].resource.uri: "u" ≠ "v"',
    });
  });

  it("an error result on one side only is a difference; a call without a result is a failure", () => {
    const error = ok({ ...text("disk full"), isError: true });
    expect(judge(error, ok({ structuredContent: { content: [] } }), { compare: false }).status).toBe("different");
    expect(judge(ok(text("x")), { error: "MCP error -32603: boom" }, { compare: true })).toEqual({
      status: "failed",
      detail: "through MIG: MCP error -32603: boom",
    });
  });
});
