// `mig schema diff` as a release gate runs it: the real binary on contract files, a verdict and one line per breaking
// change, --json for scripts, and exit status 0 (compatible), 1 (breaking) or 10 (a file it cannot read).
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/process.ts";

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mig schema diff <args>` in the folder of the contract files, to its end. */
function diff(args: string[]): Promise<Ran> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
  for (const name of ["MIG_URL", "MIG_TENANT", "MIG_TOKEN"]) delete env[name];
  const child = spawn(process.execPath, [join(ROOT, "cli/mig.mjs"), "schema", "diff", ...args], { cwd: dir, env });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.stdin.end();
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

let dir: string;

const question = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };
const answer = {
  type: "object",
  properties: { text: { type: "string" }, score: { type: "number" } },
  required: ["text"],
};
const descriptor = (version: string, id = "observatory.models.infer") => ({
  id,
  version,
  modes: ["unary"],
  input_schema_uri: `schema://observatory/models/infer-input/v${version}`,
  output_schema_uri: `schema://observatory/models/infer-output/v${version}`,
  auth_scopes: [],
});

const FILES: Record<string, unknown> = {
  "v1.json": { descriptor: descriptor("1.0.0"), input_schema: question, output_schema: answer },
  // Loosened input, tightened output: compatible.
  "v1.1.json": {
    descriptor: descriptor("1.1.0"),
    input_schema: { ...question, properties: { ...question.properties, lang: { type: "string" } } },
    output_schema: { ...answer, required: ["text", "score"] },
  },
  // The output's text may now be absent and null: two breaking changes.
  "v1.2.json": {
    descriptor: descriptor("1.2.0"),
    input_schema: question,
    output_schema: {
      ...answer,
      properties: { ...answer.properties, text: { type: ["string", "null"] } },
      required: [],
    },
  },
  "v2.json": {
    descriptor: descriptor("2.0.0"),
    input_schema: { ...question, properties: { q: { type: "string", maxLength: 200 } } },
    output_schema: answer,
  },
  // A provider's record: schemas keyed by the descriptor's URIs.
  "record-v1.1.json": {
    descriptor: descriptor("1.1.0"),
    schemas: {
      "schema://observatory/models/infer-input/v1.1.0": question,
      "schema://observatory/models/infer-output/v1.1.0": answer,
    },
  },
  "other-capability.json": { descriptor: descriptor("1.0.1", "observatory.models.embed"), input_schema: question },
  "bare-a.json": { type: "object", properties: { a: { type: "string" } } },
  "bare-ab.json": { type: "object", properties: { a: { type: "string" }, b: { type: "integer" } } },
  "bare-a-described.json": { type: "object", description: "now documented", properties: { a: { type: "string" } } },
  "not-a-schema.json": { type: "object", properties: { a: { type: "text" } } },
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "mig-schema-"));
  for (const [name, body] of Object.entries(FILES)) writeFileSync(join(dir, name), JSON.stringify(body, null, 2));
  writeFileSync(join(dir, "broken.json"), '{"type": "object",');
});

describe("mig schema diff", () => {
  it("prints the verdict and one line per breaking change, and exits 1 on a breaking change", async () => {
    const [compatible, breaking] = await Promise.all([diff(["v1.json", "v1.1.json"]), diff(["v1.json", "v1.2.json"])]);

    expect(compatible.stderr).toBe("");
    expect(compatible.code).toBe(0);
    expect(compatible.stdout.split("\n")[0]).toBe(
      "compatible: no breaking changes (observatory.models.infer 1.0.0 → 1.1.0)",
    );

    expect(breaking.stderr).toBe("");
    expect(breaking.code).toBe(1);
    const lines = breaking.stdout.trim().split("\n");
    expect(lines[0]).toBe("incompatible: 2 breaking changes (observatory.models.infer 1.0.0 → 1.2.0)");
    expect(lines[1]).toMatch(/^KIND\s+DIRECTION\s+PATH\s+RULE\s+CHANGE$/);
    expect(lines[2]).toMatch(
      /^breaking\s+output\s+\/properties\/text\s+required-removed\s+property "text" is no longer/,
    );
    expect(lines[3]).toMatch(
      /^breaking\s+output\s+\/properties\/text\s+nullable-added\s+type was string, now string \| null$/,
    );
    expect(lines[4]).toBe("a breaking change needs a new major version: publish it as 2.0.0");
  });

  it("--json gives scripts the whole report, with the versions and whether the major changed", async () => {
    const [breaking, major] = await Promise.all([
      diff(["v1.json", "v1.2.json", "--json"]),
      diff(["v1.json", "v2.json", "--json"]),
    ]);
    expect(breaking.code).toBe(1);
    const report = JSON.parse(breaking.stdout);
    expect(report).toEqual({
      compatible: false,
      breaking: [
        { direction: "output", path: "/properties/text", rule: "required-removed", message: expect.any(String) },
        { direction: "output", path: "/properties/text", rule: "nullable-added", message: expect.any(String) },
      ],
      notes: [],
      old: { file: "v1.json", id: "observatory.models.infer", version: "1.0.0" },
      new: { file: "v1.2.json", id: "observatory.models.infer", version: "1.2.0" },
      major_changed: false,
    });

    expect(major.code).toBe(1);
    expect(JSON.parse(major.stdout)).toEqual(
      expect.objectContaining({
        compatible: false,
        breaking: [expect.objectContaining({ direction: "input", path: "/properties/q", rule: "maxLength-added" })],
        major_changed: true,
      }),
    );
  });

  it("lists the safe changes with --notes, and reads a provider's record with schemas keyed by URI", async () => {
    const [notes, record] = await Promise.all([
      diff(["v1.json", "v1.1.json", "--notes"]),
      diff(["v1.json", "record-v1.1.json", "--json"]),
    ]);
    expect(notes.code).toBe(0);
    expect(notes.stdout).toMatch(/^note\s+input\s+\/properties\/lang\s+property-added\s+/m);
    expect(notes.stdout).toMatch(/^note\s+output\s+\/properties\/score\s+required-added\s+/m);

    expect(record.code).toBe(0);
    expect(JSON.parse(record.stdout)).toEqual(expect.objectContaining({ compatible: true, breaking: [], notes: [] }));
  });

  it("compares two bare schemas in both roles, or in the one --as names", async () => {
    const [both, asInput, asOutput, annotations, strict] = await Promise.all([
      diff(["bare-a.json", "bare-ab.json", "--json"]),
      diff(["bare-a.json", "bare-ab.json", "--as", "input"]),
      diff(["bare-ab.json", "bare-a.json", "--as", "output"]),
      diff(["bare-a.json", "bare-a-described.json"]),
      diff(["bare-a.json", "bare-ab.json", "--as", "input", "--strict"]),
    ]);
    // A property declared where the old open object took anything: a note by default, in both roles.
    expect(both.code).toBe(0);
    expect(JSON.parse(both.stdout).notes.map((change: { direction: string }) => change.direction)).toEqual([
      "input",
      "output",
    ]);
    expect(asInput.code).toBe(0);
    expect(asOutput.code).toBe(1);
    expect(asOutput.stdout).toMatch(/^breaking\s+output\s+\/properties\/b\s+property-removed\s+/m);
    expect(annotations.code).toBe(0);
    expect(annotations.stdout).toBe("compatible: no breaking changes\n");
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^breaking\s+input\s+\/properties\/b\s+property-added\s+/m);
  });

  it("exits 10 with a sentence for a file it cannot read, that is not JSON, not a schema, or of another shape", async () => {
    const runs = await Promise.all([
      diff(["v1.json", "missing.json"]),
      diff(["broken.json", "v1.json"]),
      diff(["bare-a.json", "not-a-schema.json"]),
      diff(["bare-a.json", "v1.json"]),
      diff(["v1.json", "other-capability.json"]),
    ]);
    for (const run of runs) {
      expect(run.code).toBe(10);
      expect(run.stdout).toBe("");
    }
    const [missing, broken, invalid, mixed, other] = runs.map((run) => run.stderr.trim());
    expect(missing).toMatch(/^mig schema diff: MIG_INVALID_REQUEST: cannot read missing\.json: ENOENT/);
    expect(broken).toMatch(/^mig schema diff: MIG_INVALID_REQUEST: broken\.json is not JSON: /);
    expect(invalid).toBe(
      'mig schema diff: MIG_INVALID_REQUEST: the new input schema (not-a-schema.json) is not valid JSON Schema 2020-12: at /properties/a/type, must be equal to one of the allowed values ("array", "boolean", "integer", "null", "number", "object", "string")',
    );
    expect(mixed).toBe(
      "mig schema diff: MIG_INVALID_REQUEST: bare-a.json is a bare JSON Schema and v1.json a descriptor file: give both files in the same shape",
    );
    expect(other).toMatch(
      /describes observatory\.models\.infer and other-capability\.json describes observatory\.models\.embed/,
    );
  });
});
