// `mig schema diff <old> <new>`: whether a new version of a capability's contract keeps the callers and consumers of the
// old one working (docs/contracts.md), as a verdict and one line per breaking change, or JSON for a release gate.
import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import type { Change, CompatibilityReport, ContractSchemas, Direction } from "../runtime/provider/schema-compat.ts";
import { MigError } from "../schemas/errors.ts";
import { bold, dim, printJson, printTable, reportFailure } from "./output.ts";

/** What one file holds: a descriptor file's contract, or a bare JSON Schema whose direction the caller picks. */
type Loaded =
  | { kind: "descriptor"; file: string; id?: string; version?: string; contract: ContractSchemas }
  | { kind: "schema"; file: string; schema: unknown };

const DESCRIPTOR_KEYS = ["descriptor", "input_schema", "output_schema"];

function refuse(message: string): MigError {
  return new MigError("MIG_INVALID_REQUEST", message, { retryable: false });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads a contract file. An object with `descriptor`, `input_schema` or `output_schema` at its top is a descriptor
 * file; anything else is read as one JSON Schema. A descriptor file may give its schemas inline (`input_schema`,
 * `output_schema`) or, as a provider's record does, in `schemas` keyed by the descriptor's schema URIs.
 */
function load(file: string): Loaded {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw refuse(`cannot read ${file}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw refuse(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(value) || !DESCRIPTOR_KEYS.some((key) => key in value)) return { kind: "schema", file, schema: value };
  const descriptor = value.descriptor;
  if (descriptor !== undefined && !isObject(descriptor)) {
    throw refuse(
      `${file}: "descriptor" must be a capability descriptor object, like {"id": "a.b", "version": "1.0.0"}`,
    );
  }
  const schemas = value.schemas;
  if (schemas !== undefined && !isObject(schemas)) throw refuse(`${file}: "schemas" must map schema URIs to schemas`);
  const contract: ContractSchemas = {};
  for (const direction of ["input", "output"] as const) {
    const inline = value[`${direction}_schema`];
    const uri = descriptor?.[`${direction}_schema_uri`];
    const schema = inline !== undefined ? inline : typeof uri === "string" ? schemas?.[uri] : undefined;
    if (schema !== undefined) contract[direction] = schema;
  }
  if (contract.input === undefined && contract.output === undefined) {
    throw refuse(
      `${file} holds no schema: give "input_schema" and "output_schema" (or "schemas" keyed by the descriptor's schema URIs)`,
    );
  }
  const id = typeof descriptor?.id === "string" ? descriptor.id : undefined;
  const version = typeof descriptor?.version === "string" ? descriptor.version : undefined;
  return { kind: "descriptor", file, contract, ...(id ? { id } : {}), ...(version ? { version } : {}) };
}

/** The contracts to compare; a bare schema stands for the directions `--as` names, both when it names none. */
function contractsOf(old: Loaded, next: Loaded, as: Direction | undefined): [ContractSchemas, ContractSchemas] {
  if (old.kind === "descriptor" && next.kind === "descriptor") {
    if (old.id && next.id && old.id !== next.id) {
      throw refuse(
        `${old.file} describes ${old.id} and ${next.file} describes ${next.id}: compare two versions of one capability`,
      );
    }
    return [old.contract, next.contract];
  }
  if (old.kind === "schema" && next.kind === "schema") {
    const directions: Direction[] = as ? [as] : ["input", "output"];
    const wrap = (schema: unknown) => Object.fromEntries(directions.map((direction) => [direction, schema]));
    return [wrap(old.schema), wrap(next.schema)];
  }
  const [bare, described] = old.kind === "schema" ? [old, next] : [next, old];
  throw refuse(
    `${bare.file} is a bare JSON Schema and ${described.file} a descriptor file: give both files in the same shape`,
  );
}

const major = (version: string | undefined) => (version ? /^(\d+)\./.exec(version)?.[1] : undefined);

function versionText(old: Loaded, next: Loaded): string {
  if (old.kind !== "descriptor" || next.kind !== "descriptor") return "";
  const id = next.id ?? old.id;
  if (!old.version && !next.version) return id ? ` (${id})` : "";
  return ` (${id ? `${id} ` : ""}${old.version ?? "?"} → ${next.version ?? "?"})`;
}

function printReport(report: CompatibilityReport, old: Loaded, next: Loaded, notes: boolean): void {
  const count = report.breaking.length;
  const verdict = report.compatible
    ? `compatible: no breaking changes${versionText(old, next)}`
    : `incompatible: ${count} breaking change${count === 1 ? "" : "s"}${versionText(old, next)}`;
  process.stdout.write(`${bold(verdict)}\n`);
  const rows: [string, Change][] = [
    ...report.breaking.map((change): [string, Change] => ["breaking", change]),
    ...(notes ? report.notes.map((change): [string, Change] => ["note", change]) : []),
  ];
  if (rows.length > 0) {
    printTable(
      ["KIND", "DIRECTION", "PATH", "RULE", "CHANGE"],
      rows.map(([kind, change]) => [kind, change.direction, change.path || "(root)", change.rule, change.message]),
    );
  }
  const oldMajor = old.kind === "descriptor" ? major(old.version) : undefined;
  const newMajor = next.kind === "descriptor" ? major(next.version) : undefined;
  if (!report.compatible && oldMajor !== undefined && newMajor !== undefined) {
    process.stdout.write(
      oldMajor === newMajor
        ? `${dim(`a breaking change needs a new major version: publish it as ${Number(oldMajor) + 1}.0.0`)}\n`
        : `${dim(`the major version goes from ${oldMajor} to ${newMajor}, which announces these breaking changes`)}\n`,
    );
  }
  if (!notes && report.notes.length > 0) {
    process.stdout.write(
      `${dim(`${report.notes.length} safe change${report.notes.length === 1 ? "" : "s"} not listed (--notes lists them)`)}\n`,
    );
  }
}

const HELP = `
Each file is a JSON Schema, or a descriptor file (docs/contracts.md):
  { "descriptor": { "id": "...", "version": "1.2.0", ... }, "input_schema": {...}, "output_schema": {...} }
A new input must accept every input the old one accepted; a new output must stay readable by the old one's consumers.
Two bare schemas are compared in both roles unless --as names one.

Exit status: 0 compatible, 1 breaking, 10 (MIG_INVALID_REQUEST) for a file that cannot be read or is not a schema.
`;

export function addSchemaCommand(program: Command): void {
  const schema = program.command("schema").description("tools for capability contracts and their JSON Schemas");
  schema
    .command("diff")
    .description("check that a new version of a contract is backward compatible with the old one")
    .argument("<old>", "the old version: a JSON Schema or a descriptor file")
    .argument("<new>", "the new version, in the same shape")
    .addOption(new Option("--as <direction>", "compare two bare schemas as this only").choices(["input", "output"]))
    .option("--notes", "also list the safe changes (loosened inputs, tightened outputs)")
    .option("--strict", "count a property declared where the old input's open object took any value as breaking")
    .addHelpText("after", HELP)
    .action(
      async (
        oldFile: string,
        newFile: string,
        options: { as?: Direction; notes?: boolean; strict?: boolean },
        command: Command,
      ) => {
        const { json } = command.optsWithGlobals<{ json?: boolean }>();
        try {
          const old = load(oldFile);
          const next = load(newFile);
          const [oldContract, newContract] = contractsOf(old, next, options.as);
          // The checker (and Ajv with it) loads only when this command runs.
          const { compareContracts } = await import("../runtime/provider/schema-compat.ts");
          const report = compareContracts(oldContract, newContract, {
            strict: options.strict === true,
            names: { old: oldFile, new: newFile },
          });
          if (json) {
            const side = (loaded: Loaded) =>
              loaded.kind === "descriptor"
                ? { file: loaded.file, id: loaded.id, version: loaded.version }
                : { file: loaded.file };
            const oldMajor = old.kind === "descriptor" ? major(old.version) : undefined;
            const newMajor = next.kind === "descriptor" ? major(next.version) : undefined;
            printJson({
              ...report,
              old: side(old),
              new: side(next),
              ...(oldMajor !== undefined && newMajor !== undefined ? { major_changed: oldMajor !== newMajor } : {}),
            });
          } else printReport(report, old, next, options.notes === true);
          process.exitCode = report.compatible ? 0 : 1;
        } catch (err) {
          reportFailure("schema diff", err);
        }
      },
    );
}
