// Backward compatibility of capability contracts: whether a new version of an input or output JSON Schema keeps every
// caller and consumer of the old version working, with each breaking change named by its rule and its path.
//
// One engine answers one question, "is every value the schema SUB accepts also accepted by SUP?", and names each reason
// it cannot show so. A new input must accept all old inputs (old ⊆ new: a reason is a tightening), a new output must
// stay within what old consumers read (new ⊆ old: a reason is a loosening). Running the engine the other way round
// finds the changes that are safe in that direction; they come back as notes. Where the engine cannot decide, it says
// so with the rule "undecidable: <construct>", and that counts as breaking. docs/contracts.md lists the rules.
import { Ajv2020, type ErrorObject } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { MigError } from "../../schemas/errors.ts";

export type Direction = "input" | "output";

/** One difference between two versions of a schema. */
export interface Change {
  direction: Direction;
  /** Keywords from the schema's root to the change, as a JSON Pointer (`/properties/user/properties/age`); `""` is the root. */
  path: string;
  /** Stable name of the rule, e.g. `required-added`, `type-widened`, `undecidable: oneOf`. */
  rule: string;
  /** One sentence for a person. */
  message: string;
}

export interface CompatibilityReport {
  /** True when no change breaks a caller of the old input or a consumer of the old output. */
  compatible: boolean;
  breaking: Change[];
  /** Changes that are safe in their direction (loosened inputs, tightened outputs), for the record. */
  notes: Change[];
}

/** The schemas of one version of a contract; an absent one accepts anything, as the runtime validates nothing then. */
export interface ContractSchemas {
  input?: unknown;
  output?: unknown;
}

export interface CompareOptions {
  /**
   * Also count as breaking an input property that the new version declares where the old version's open object
   * (additionalProperties absent or true) took any value. By default that is a note: keys an open object leaves
   * undeclared are not part of the contract a caller can rely on.
   */
  strict?: boolean;
  /**
   * Also look for the safe changes (the notes); true by default. Without them a comparison takes about a third less
   * time, which suits a caller that only needs the verdict.
   */
  notes?: boolean;
  /** Where each version came from (a file name), for error messages. */
  names?: { old: string; new: string };
}

/** Compares both directions of a contract: `input` must not tighten, `output` must not loosen. */
export function compareContracts(
  old: ContractSchemas,
  next: ContractSchemas,
  options: CompareOptions = {},
): CompatibilityReport {
  const reports: CompatibilityReport[] = [];
  for (const direction of ["input", "output"] as const) {
    if (old[direction] === undefined && next[direction] === undefined) continue;
    reports.push(compareSchemas(old[direction] ?? true, next[direction] ?? true, direction, options));
  }
  const breaking = reports.flatMap((report) => report.breaking);
  return { compatible: breaking.length === 0, breaking, notes: reports.flatMap((report) => report.notes) };
}

/**
 * Compares two versions of one schema used as `direction`. Throws a MigError (MIG_INVALID_REQUEST) naming the schema
 * and the place when either is not valid JSON Schema 2020-12 or has a `$ref` that points at nothing.
 */
export function compareSchemas(
  oldSchema: unknown,
  newSchema: unknown,
  direction: Direction,
  options: CompareOptions = {},
): CompatibilityReport {
  const from = (side: "old" | "new") => (options.names ? ` (${options.names[side]})` : "");
  const oldDoc = prepare(oldSchema, `the old ${direction} schema${from("old")}`);
  const newDoc = prepare(newSchema, `the new ${direction} schema${from("new")}`);
  const asInput = direction === "input";
  // The breaking question: input, old ⊆ new (SUP is the new version); output, new ⊆ old (SUP is the old version).
  const forward = passes(asInput ? oldDoc : newDoc, asInput ? newDoc : oldDoc, asInput);
  const breakingReasons: Reason[] = [];
  const noteReasons: Reason[] = [];
  for (const reason of check(forward.sub.root, forward.sup.root, forward)) {
    if (reason.undeclared && !options.strict) noteReasons.push(reason);
    else breakingReasons.push(reason);
  }
  const backward = forward.reverse;
  const safe = options.notes === false ? [] : check(backward.sub.root, backward.sup.root, backward);
  for (const reason of safe) if (!reason.undecidable) noteReasons.push(reason);
  const breaking = unique(breakingReasons).map((reason) => toChange(reason, direction));
  const seen = new Set(breaking.map((change) => `${change.path} ${change.rule}`));
  const notes = unique(noteReasons)
    .map((reason) => toChange(reason, direction))
    .filter((change) => !seen.has(`${change.path} ${change.rule}`));
  return { compatible: breaking.length === 0, breaking, notes };
}

// ---------------------------------------------------------------------------------------------------------------------
// Documents: validated once, `$ref`s checked, anchors indexed.

type Node = Record<string, unknown>;
/** A schema after `$ref`s are followed and `allOf` is merged where that is exact. */
type Schema = boolean | Node | Opaque;

/** A schema the engine does not look into: an external `$ref` (equal only to the same reference) or a construct it cannot read. */
class Opaque {
  constructor(
    readonly construct: string,
    readonly ref?: string,
  ) {}
}

/** What is known of one subschema of a document. */
interface Info {
  /** Numbers the subschemas of a document, for the memo of pairs. */
  id: number;
  flat?: Schema;
  types?: Types;
  choice?: Choice;
  /**
   * What is known of the pairs this subschema was compared in as SUB, by the id of SUP. A document is SUB in one pass
   * only, and most subschemas meet one partner, so the first pair is kept inline and a map made only for more.
   */
  partner?: number;
  known?: Known | "running";
  more?: Map<number, Known | "running">;
}

interface Doc {
  root: unknown;
  label: string;
  anchors: Map<string, unknown>;
  /** A subschema with its own `$id` moves the base of the `$ref`s below it; those are not followed. */
  nestedIds: boolean;
  // Plain maps, not weak ones: a document lives for one comparison, and weak maps cost far more per entry.
  info: Map<object, Info>;
  ids: number;
  /** `$ref` targets by fragment. */
  targets: Map<string, unknown>;
  derived: Map<object, Map<string, Node>>;
}

/** Keywords that constrain values in JSON Schema 2020-12 as Ajv runs it; everything else is an annotation or ignored. */
const ASSERTIONS = new Set([
  "type",
  "nullable",
  "enum",
  "const",
  "multipleOf",
  "maximum",
  "exclusiveMaximum",
  "minimum",
  "exclusiveMinimum",
  "maxLength",
  "minLength",
  "pattern",
  "format",
  "maxItems",
  "minItems",
  "uniqueItems",
  "maxContains",
  "minContains",
  "maxProperties",
  "minProperties",
  "required",
  "dependentRequired",
  "dependencies",
  "allOf",
  "anyOf",
  "oneOf",
  "not",
  "if",
  "then",
  "else",
  "dependentSchemas",
  "prefixItems",
  "items",
  "contains",
  "properties",
  "patternProperties",
  "additionalProperties",
  "propertyNames",
  "unevaluatedItems",
  "unevaluatedProperties",
  "$ref",
  "$dynamicRef",
]);

const SCHEMA_MAPS = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"];
const SCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_VALUES = [
  "not",
  "if",
  "then",
  "else",
  "items",
  "contains",
  "additionalProperties",
  "propertyNames",
  "unevaluatedItems",
  "unevaluatedProperties",
  "contentSchema",
];

let metaValidator: Ajv2020 | undefined;

function invalid(label: string, what: string): MigError {
  return new MigError("MIG_INVALID_REQUEST", `${label} is not valid JSON Schema 2020-12: ${what}`, {
    retryable: false,
  });
}

/** Validates a schema against the 2020-12 meta-schema and walks it once for `$ref`s, anchors and patterns. */
function prepare(schema: unknown, label: string): Doc {
  if (typeof schema !== "boolean" && !isNode(schema)) {
    throw invalid(label, `a schema is a JSON object or a boolean, not ${describeValue(schema)}`);
  }
  if (isNode(schema) && typeof schema.$schema === "string" && !/\/draft\/2020-12\/schema#?$/.test(schema.$schema)) {
    throw invalid(
      label,
      `it declares "$schema": "${schema.$schema}", and contracts are read as JSON Schema 2020-12 (the dialect the schema registry compiles)`,
    );
  }
  if (!metaValidator) {
    metaValidator = new Ajv2020({ allErrors: true, strict: false });
    formats.default(metaValidator);
  }
  let valid: boolean;
  try {
    valid = metaValidator.validateSchema(schema) as boolean;
  } catch (err) {
    if (err instanceof RangeError) throw invalid(label, "it is nested too deeply to be checked");
    throw invalid(label, (err as Error).message);
  }
  if (!valid) throw invalid(label, metaErrors(metaValidator.errors ?? []));
  const doc: Doc = {
    root: schema,
    label,
    anchors: new Map(),
    nestedIds: false,
    info: new Map([[ANYTHING, { id: 0 }]]),
    ids: 1,
    targets: new Map(),
    derived: new Map(),
  };
  // One walk over every subschema (never into enum, const or default values). Places are kept as links to the parent
  // and spelled out only for an error, as a multi-MiB schema has hundreds of thousands of them.
  const refs: Place[] = [];
  const stack: Place[] = [{ node: schema, key: "" }];
  while (stack.length > 0) {
    const place = stack.pop()!;
    const node = place.node;
    if (!isNode(node)) continue;
    if (typeof node.$anchor === "string") doc.anchors.set(node.$anchor, node);
    if (typeof node.$id === "string" && place.parent) doc.nestedIds = true;
    if (typeof node.$ref === "string") refs.push(place);
    if (typeof node.pattern === "string") regexOf(node.pattern, doc, () => `${pathOf(place)}/pattern`);
    for (const key of SCHEMA_VALUES) if (key in node) stack.push({ node: node[key], parent: place, key });
    for (const key of SCHEMA_LISTS) {
      const list = node[key];
      if (!Array.isArray(list)) continue;
      for (let i = 0; i < list.length; i++) stack.push({ node: list[i], parent: place, key, name: i });
    }
    for (const key of SCHEMA_MAPS) {
      const map = node[key];
      if (!isNode(map)) continue;
      for (const name in map) {
        if (key === "patternProperties") regexOf(name, doc, () => `${pathOf(place)}/patternProperties`);
        stack.push({ node: map[name], parent: place, key, name });
      }
    }
  }
  for (const place of refs) {
    const ref = (place.node as Node).$ref as string;
    const local = localRef(ref, doc);
    if (local !== undefined && lookUp(local, doc) === undefined) {
      throw invalid(label, `the $ref "${ref}" at ${pathOf(place) || "the root"} points at nothing in the document`);
    }
  }
  return doc;
}

function metaErrors(errors: ErrorObject[]): string {
  // Ajv reports each failed branch of the meta-schema's own anyOf; the first concrete error per place says the most.
  const byPlace = new Map<string, string>();
  for (const error of errors) {
    if (error.keyword === "anyOf" || error.keyword === "oneOf" || error.keyword === "$dynamicRef") continue;
    if (byPlace.has(error.instancePath)) continue;
    const allowed = (error.params as { allowedValues?: unknown[] }).allowedValues;
    byPlace.set(
      error.instancePath,
      `${error.message ?? "is invalid"}${allowed ? ` (${allowed.map((value) => JSON.stringify(value)).join(", ")})` : ""}`,
    );
  }
  const found = [...byPlace].slice(0, 3).map(([place, message]) => `at ${place || "the root"}, ${message}`);
  return found.length > 0 ? found.join("; ") : "it does not match the meta-schema";
}

/** A subschema met on the walk, with the way back to the root. */
interface Place {
  node: unknown;
  parent?: Place;
  /** The keyword that led here, and the property name or index under it, if any. */
  key: string;
  name?: string | number;
}

function pathOf(place: Place): string {
  const keys: string[] = [];
  for (let at: Place | undefined = place; at?.parent; at = at.parent) {
    keys.push(at.name === undefined ? at.key : `${at.key}/${escapePointer(String(at.name))}`);
  }
  return keys
    .reverse()
    .map((key) => `/${key}`)
    .join("");
}

function regexOf(pattern: string, doc: Doc, where: () => string): RegExp {
  try {
    return new RegExp(pattern, "u");
  } catch (err) {
    throw invalid(doc.label, `at ${where()}, "${pattern}" is not a regular expression (${(err as Error).message})`);
  }
}

/** The fragment of a reference into this document, or undefined for one that leaves it. */
function localRef(ref: string, doc: Doc): string | undefined {
  if (ref.startsWith("#")) return ref;
  const id = isNode(doc.root) && typeof doc.root.$id === "string" ? doc.root.$id.replace(/#$/, "") : undefined;
  if (id && ref.startsWith(`${id}#`)) return ref.slice(id.length);
  if (id && ref === id) return "#";
  return undefined;
}

function lookUp(fragment: string, doc: Doc): unknown {
  if (doc.targets.has(fragment)) return doc.targets.get(fragment);
  const target = follow(fragment, doc);
  doc.targets.set(fragment, target);
  return target;
}

function follow(fragment: string, doc: Doc): unknown {
  if (fragment === "#") return doc.root;
  if (!fragment.startsWith("#/")) return doc.anchors.get(fragment.slice(1));
  let node: unknown = doc.root;
  for (const raw of fragment.slice(2).split("/")) {
    let token: string;
    try {
      token = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    } catch {
      return undefined;
    }
    if (Array.isArray(node)) node = /^\d+$/.test(token) ? node[Number(token)] : undefined;
    else if (isNode(node) && Object.hasOwn(node, token)) node = node[token];
    else return undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

// ---------------------------------------------------------------------------------------------------------------------
// Normal form: `$ref`s followed, `{}` read as `true`, `allOf` merged into one schema where the merge is exact.

function flatten(schema: unknown, doc: Doc): Schema {
  if (schema === true || schema === false) return schema;
  if (schema instanceof Opaque) return schema;
  if (!isNode(schema)) return true;
  const info = infoOf(schema, doc);
  if (info.flat === RESOLVING) {
    throw invalid(doc.label, "a $ref or allOf leads back to itself without any keyword in between, so it never ends");
  }
  if (info.flat !== undefined) return info.flat;
  info.flat = RESOLVING;
  try {
    info.flat = flattenNode(schema, doc);
    return info.flat;
  } catch (err) {
    info.flat = undefined;
    throw err;
  }
}

function infoOf(node: object, doc: Doc): Info {
  let info = doc.info.get(node);
  if (!info) doc.info.set(node, (info = { id: doc.ids++ }));
  return info;
}

/** Marks a schema whose normal form is being made, to catch a $ref that leads back to itself. */
const RESOLVING = new Opaque("$ref loop");

function flattenNode(node: Node, doc: Doc): Schema {
  if (typeof node.$ref === "string") {
    const rest = Object.keys(node).filter((key) => key !== "$ref" && ASSERTIONS.has(key));
    // In 2020-12 the keywords beside a $ref apply too: the schema is both.
    if (rest.length > 0) return flatten({ allOf: [{ $ref: node.$ref }, pick(node, rest)] }, doc);
    const fragment = localRef(node.$ref, doc);
    if (fragment === undefined) return new Opaque("external $ref", node.$ref);
    if (doc.nestedIds) return new Opaque("$ref below a nested $id");
    return flatten(lookUp(fragment, doc), doc);
  }
  if (Array.isArray(node.allOf)) {
    const parts = [flatten(derive(node, ["allOf"], doc), doc), ...node.allOf.map((member) => flatten(member, doc))];
    return merge(parts) ?? node;
  }
  return Object.keys(node).some((key) => ASSERTIONS.has(key)) ? node : true;
}

function pick(node: Node, keys: string[]): Node {
  const out: Node = {};
  for (const key of keys) out[key] = node[key];
  return out;
}

/** The node without some keywords, made once per node and keyword set so that it keeps one identity. */
function derive(node: Node, drop: string[], doc: Doc): Node {
  let byKeys = doc.derived.get(node);
  if (!byKeys) doc.derived.set(node, (byKeys = new Map()));
  const key = drop.join(",");
  let derived = byKeys.get(key);
  if (!derived) {
    derived = pick(
      node,
      Object.keys(node).filter((name) => !drop.includes(name)),
    );
    byKeys.set(key, derived);
  }
  return derived;
}

const LOWER_BOUNDS = new Set(["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"]);
const UPPER_BOUNDS = new Set(["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"]);
const MERGED_MAPS = new Set(["properties", "patternProperties", "dependentSchemas", "dependentRequired"]);
const MERGE_GROUPS = [["if", "then", "else"], ["contains", "minContains", "maxContains"], ["prefixItems"]];
/** Keywords whose schemas all apply to the same place: two of them merge into an allOf of both. */
const CONJUNCTIVE = new Set(["items", "propertyNames", "additionalProperties"]);

/** Merges the parts of an allOf into one schema with the same meaning, or undefined where that is not exact. */
function merge(parts: Schema[]): Schema | undefined {
  const nodes: Node[] = [];
  for (const part of parts) {
    if (part === false) return false;
    if (part === true) continue;
    if (part instanceof Opaque || "allOf" in part) return undefined;
    nodes.push(part);
  }
  if (nodes.length === 0) return true;
  if (nodes.length === 1) return nodes[0];
  if (nodes.some((node) => "unevaluatedProperties" in node || "unevaluatedItems" in node)) return undefined;
  // Keywords read together (then/else pair with their own if, minContains with its own contains) cannot be pooled
  // from two schemas; nor can two prefixItems lists or two contains.
  for (const group of MERGE_GROUPS) {
    if (nodes.filter((node) => group.some((key) => key in node)).length > 1) return undefined;
  }
  // additionalProperties only sees the properties of its own schema: merging is exact only where the closed schema
  // already names every property and pattern the others name.
  for (const closed of nodes.filter((node) => "additionalProperties" in node && node.additionalProperties !== true)) {
    const names = new Set(Object.keys(isNode(closed.properties) ? closed.properties : {}));
    const patterns = canonical(closed.patternProperties ?? {});
    for (const other of nodes) {
      if (other === closed) continue;
      if (isNode(other.properties) && Object.keys(other.properties).some((name) => !names.has(name))) return undefined;
      if ("patternProperties" in other && canonical(other.patternProperties) !== patterns) return undefined;
    }
  }
  const out: Node = {};
  const items: unknown[] = [];
  let prefixOwner: Node | undefined;
  for (const node of nodes) {
    const values = valuesOf(node);
    if (values) {
      if (out.enum === undefined) out.enum = values;
      else {
        const keep = new Set(values.map(canonical));
        out.enum = (out.enum as unknown[]).filter((value) => keep.has(canonical(value)));
      }
    }
    for (const [key, value] of Object.entries(node)) {
      if (!ASSERTIONS.has(key) || key === "enum" || key === "const") continue;
      if (key === "type" || key === "nullable") continue;
      if (key === "prefixItems") {
        prefixOwner = node;
        continue;
      }
      if (key === "items") {
        if (node !== prefixOwner && !("prefixItems" in node)) items.push(value);
        continue;
      }
      if (!(key in out)) {
        // Maps and lists this merge adds to are copied, so that the document itself never changes.
        out[key] = MERGED_MAPS.has(key)
          ? { ...(value as Node) }
          : key === "required"
            ? [...(value as string[])]
            : value;
        continue;
      }
      const had = out[key];
      if (LOWER_BOUNDS.has(key)) out[key] = Math.max(had as number, value as number);
      else if (UPPER_BOUNDS.has(key)) out[key] = Math.min(had as number, value as number);
      else if (key === "required") out[key] = [...new Set([...(had as string[]), ...(value as string[])])];
      else if (key === "uniqueItems") out[key] = had === true || value === true;
      else if (key === "properties" || key === "patternProperties" || key === "dependentSchemas") {
        const map = had as Node;
        for (const [name, schema] of Object.entries(value as Node)) {
          map[name] = Object.hasOwn(map, name) ? { allOf: [map[name], schema] } : schema;
        }
      } else if (key === "dependentRequired") {
        const map = had as Record<string, string[]>;
        for (const [name, list] of Object.entries(value as Record<string, string[]>)) {
          map[name] = [...new Set([...(map[name] ?? []), ...list])];
        }
      } else if (CONJUNCTIVE.has(key)) out[key] = { allOf: [had, value] };
      else if (canonical(had) !== canonical(value) || mentionsRef(value)) return undefined;
    }
  }
  let types: Set<string> | undefined;
  for (const node of nodes) {
    const own = declaredTypes(node);
    if (own) types = types ? intersectTypes(types, own) : new Set(own);
  }
  if (types) out.type = [...types];
  if (prefixOwner) {
    const prefix = prefixOwner.prefixItems as unknown[];
    out.prefixItems = prefix.map((schema) => (items.length > 0 ? { allOf: [schema, ...items] } : schema));
    if ("items" in prefixOwner) items.push(prefixOwner.items);
  }
  if (items.length > 0) out.items = items.length === 1 ? items[0] : { allOf: items };
  return Object.keys(out).length > 0 ? out : true;
}

// ---------------------------------------------------------------------------------------------------------------------
// The engine: every reason why SUB may accept a value SUP refuses.

interface Reason {
  /**
   * Which change this is: the same pair of subschemas met again through another path (a shared $defs entry) gives the
   * same change, reported once at the first path; without this a schema that reuses definitions would multiply it.
   */
  origin: number;
  path: string;
  rule: string;
  message: string;
  /** The old version's open object left this property undeclared (see CompareOptions.strict). */
  undeclared?: boolean;
  undecidable?: boolean;
}

interface Pass {
  sub: Doc;
  sup: Doc;
  /** SUP is the new version: each reason is a tightening; otherwise each reason is a loosening. */
  supIsNew: boolean;
  reverse: Pass;
  /** Shared by a pass and its reverse, which call into each other. */
  run: Run;
}

/** What is known of a pair. A trial (does one branch cover the other?) needs only one reason, so it keeps only one. */
interface Known {
  reasons: Reason[];
  complete: boolean;
}

interface Run {
  depth: number;
  /** Above zero while only whether a pair holds matters, not every reason why not. */
  trials: number;
  /** How many times a pair under comparison was met again and assumed to hold. */
  assumptions: number;
  /** Pairs in the order they were settled, to forget those that rested on an assumption that failed. */
  settled: { info: Info; partner: number }[];
}

/** Nesting deeper than this is reported as undecidable instead of overflowing the stack. */
const MAX_DEPTH = 256;
/** Stands for a SUB that accepts everything, so that it has an identity in the memo. */
const ANYTHING: Node = Object.freeze({}) as Node;

function passes(sub: Doc, sup: Doc, supIsNew: boolean): Pass {
  const run: Run = { depth: 0, trials: 0, assumptions: 0, settled: [] };
  const forward = { sub, sup, supIsNew, run } as Pass;
  const backward = { sub: sup, sup: sub, supIsNew: !supIsNew, run, reverse: forward } as Pass;
  forward.reverse = backward;
  return forward;
}

function check(subIn: unknown, supIn: unknown, pass: Pass): Reason[] {
  const sub = flatten(subIn, pass.sub);
  const sup = flatten(supIn, pass.sup);
  if (sub === false || sup === true) return [];
  if (sup === false) {
    return [
      reason(
        pass,
        "",
        "no-longer-accepted",
        "newly-accepted",
        pass.supIsNew
          ? "the new version accepts no value here (false)"
          : "the old version accepted no value here (false), the new one does",
      ),
    ];
  }
  if (sup instanceof Opaque || sub instanceof Opaque) {
    if (sup instanceof Opaque && sub instanceof Opaque && sup.ref !== undefined && sup.ref === sub.ref) return [];
    const opaque = sup instanceof Opaque ? sup : (sub as Opaque);
    return [undecidable(opaque.construct, opaque.ref ? `the $ref "${opaque.ref}" is not in the document` : "")];
  }
  const subKey = sub === true ? ANYTHING : sub;
  const info = infoOf(subKey, pass.sub);
  const partner = infoOf(sup, pass.sup).id;
  const known = knownOf(info, partner);
  const run = pass.run;
  // A pair met again while it is being compared is a cycle through $ref. It is assumed to hold (recursive schemas
  // are compared as the largest relation that holds); if the pair then fails, everything settled meanwhile is
  // forgotten, as it may rest on that assumption.
  if (known === "running") {
    run.assumptions++;
    return [];
  }
  if (known && (known.complete || run.trials > 0)) return known.reasons;
  if (run.depth >= MAX_DEPTH) {
    return [undecidable("nesting depth", `the schemas nest deeper than ${MAX_DEPTH} levels`)];
  }
  remember(info, partner, "running");
  const firstSettled = run.settled.length;
  const assumptions = run.assumptions;
  run.depth++;
  try {
    const found = once(compareNodes(subKey, sup, pass));
    const fails = !holds(found);
    if (fails && run.assumptions !== assumptions) {
      for (const stale of run.settled.splice(firstSettled)) remember(stale.info, stale.partner, undefined);
    }
    const complete = run.trials === 0 || !fails;
    const reasons = complete ? found : found.filter((each) => !each.undeclared).slice(0, 1);
    remember(info, partner, { reasons, complete });
    run.settled.push({ info, partner });
    return reasons;
  } catch (err) {
    remember(info, partner, undefined);
    throw err;
  } finally {
    run.depth--;
  }
}

function knownOf(info: Info, partner: number): Known | "running" | undefined {
  return info.partner === partner ? info.known : info.more?.get(partner);
}

function remember(info: Info, partner: number, known: Known | "running" | undefined): void {
  if (info.partner === undefined || info.partner === partner) {
    info.partner = partner;
    info.known = known;
  } else if (known === undefined) info.more?.delete(partner);
  else (info.more ??= new Map()).set(partner, known);
}

/** Whether SUB stays within SUP, when the reasons why not do not matter. */
function trial(sub: unknown, sup: unknown, pass: Pass): Reason[] {
  pass.run.trials++;
  try {
    return check(sub, sup, pass);
  } finally {
    pass.run.trials--;
  }
}

function holds(reasons: Reason[]): boolean {
  return reasons.every((found) => found.undeclared);
}

function equivalent(a: unknown, b: unknown, pass: Pass): boolean {
  return trial(a, b, pass).length === 0 && trial(b, a, pass.reverse).length === 0;
}

function compareNodes(sub: Node, sup: Node, pass: Pass): Reason[] {
  const values = valuesOf(sub);
  if (values) {
    const verdict = compareValues(values, "const" in sub && !("enum" in sub), sup, pass);
    if (verdict) return verdict;
  }
  if (Array.isArray(sup.allOf)) {
    // An allOf that does not merge: SUB must meet each member and the rest of SUP.
    const found = [...check(sub, derive(sup, ["allOf"], pass.sup), pass)];
    for (const [i, member] of sup.allOf.entries()) found.push(...within(`/allOf/${i}`, check(sub, member, pass)));
    return found;
  }
  if (Array.isArray(sub.allOf)) {
    // SUB is the intersection of its members: meeting SUP through any one of them, or its own keywords, suffices.
    const candidates = [derive(sub, ["allOf"], pass.sub), ...sub.allOf];
    for (const candidate of candidates) {
      const found = trial(candidate, sup, pass);
      if (holds(found)) return found;
    }
    return [undecidable("allOf", "no single member of the allOf is known to stay within the other version")];
  }
  const supChoice = choiceOf(sup, pass.sup);
  if (supChoice && supChoice.keyword === "oneOf" && !supChoice.disjoint) {
    // Branches that may overlap: a value must match exactly one, so only the same branches keep the same meaning.
    const subChoice = choiceOf(sub, pass.sub);
    const same =
      subChoice?.keyword === "oneOf" &&
      subChoice.branches.length === supChoice.branches.length &&
      subChoice.branches.every((branch, i) => equivalent(branch, supChoice.branches[i], pass));
    if (!same) {
      return [undecidable("oneOf", "its branches may overlap, and they are not the same in both versions")];
    }
    return check(derive(sub, ["oneOf"], pass.sub), derive(sup, ["oneOf"], pass.sup), pass);
  }
  const subChoice = choiceOf(sub, pass.sub);
  if (subChoice) {
    // Each value of SUB matches one of its branches: each branch, with the keywords beside it, must stay within SUP.
    const found: Reason[] = [];
    subChoice.pieces.forEach((piece, i) => {
      const at = `/${subChoice.keyword}/${i}`;
      // Paths follow SUB's branches; SUP's branch numbers would only repeat them.
      found.push(...within(at, supChoice ? cover(piece, i, sup, supChoice, pass) : check(piece, sup, pass)));
    });
    return found;
  }
  if (supChoice) return cover(sub, undefined, sup, supChoice, pass);
  return compareKeywords(sub, sup, pass);
}

interface Choice {
  keyword: "anyOf" | "oneOf";
  branches: unknown[];
  /** Each branch merged with the keywords beside the anyOf/oneOf. */
  pieces: Schema[];
  /** No value can match two branches, so oneOf means the same as anyOf. */
  disjoint: boolean;
}

function choiceOf(node: Node, doc: Doc): Choice | undefined {
  const keyword = Array.isArray(node.anyOf) ? "anyOf" : Array.isArray(node.oneOf) ? "oneOf" : undefined;
  if (!keyword) return undefined;
  const info = infoOf(node, doc);
  if (info.choice) return info.choice;
  const branches = node[keyword] as unknown[];
  const own = flatten(derive(node, [keyword], doc), doc);
  const flats = branches.map((branch) => flatten(branch, doc));
  const pieces = flats.map((flat) => merge([own, flat]) ?? flat);
  const disjoint =
    keyword === "anyOf" || flats.every((a, i) => flats.every((b, j) => j <= i || disjointSchemas(a, b, doc)));
  const choice: Choice = { keyword, branches, pieces, disjoint };
  info.choice = choice;
  return choice;
}

/** SUB (one piece of it, the branch `index` of its own choice if it has one) must fall within SUP's choice. */
function cover(sub: Schema, index: number | undefined, sup: Node, choice: Choice, pass: Pass): Reason[] {
  const own = check(sub, derive(sup, [choice.keyword], pass.sup), pass);
  const order = choice.branches.map((_, i) => i);
  if (index !== undefined && index < order.length) order.unshift(...order.splice(index, 1));
  for (const j of order) {
    const found = trial(sub, choice.branches[j], pass);
    if (holds(found)) return [...own, ...within(branchPath(choice, j, index), found)];
  }
  const subFlat = sub === true ? true : flatten(sub, pass.sub);
  // A piece that is itself a choice is split further, each of its branches to be covered on its own.
  if (index !== undefined && isNode(subFlat) && choiceOf(subFlat, pass.sub)) return check(subFlat, sup, pass);
  // No single branch covers it. Branches that cannot share a value with it are out of the question; if one is left,
  // the verdict is that branch's, and if none is left the values are refused outright.
  const candidates = order.filter((j) => !disjointAcross(subFlat, flatten(choice.branches[j], pass.sup), pass));
  if (candidates.length === 1) {
    const j = candidates[0]!;
    return [...own, ...within(branchPath(choice, j, index), check(sub, choice.branches[j], pass))];
  }
  if (candidates.length === 0) {
    const what = index === undefined ? "its values" : `the values of branch ${index}`;
    return [
      ...own,
      index === undefined
        ? reason(
            pass,
            "",
            "type-narrowed",
            "type-widened",
            pass.supIsNew
              ? `no branch of the new ${choice.keyword} accepts ${what}`
              : `the new version accepts values no branch of the old ${choice.keyword} accepted`,
          )
        : reason(
            pass,
            "",
            `${choice.keyword}-branch-removed`,
            `${choice.keyword}-branch-added`,
            pass.supIsNew
              ? `no branch of the new ${choice.keyword} accepts ${what} of the old one`
              : `branch ${index} of the new ${choice.keyword} accepts values no branch of the old one accepted`,
          ),
    ];
  }
  return [
    ...own,
    undecidable(
      choice.keyword,
      `no single branch of the ${pass.supIsNew ? "new" : "old"} ${choice.keyword} is known to cover ${
        index === undefined ? "the other version" : `branch ${index}`
      }, and several could share its values`,
    ),
  ];
}

function branchPath(choice: Choice, branch: number, subBranch: number | undefined): string {
  return subBranch === undefined ? `/${choice.keyword}/${branch}` : "";
}

/** Keywords whose meaning depends on more than the schema they are in; compared for sameness only. */
const SAME_OR_UNDECIDABLE = ["not", "dependencies", "minContains", "maxContains", "$dynamicRef"];

function compareKeywords(sub: Node, sup: Node, pass: Pass): Reason[] {
  const found: Reason[] = [];
  const subTypes = effectiveTypes(sub, pass.sub);
  const supTypes = effectiveTypes(sup, pass.sup);
  let missing = 0;
  let missingNull = false;
  if (supTypes !== "any") {
    for (const type of subTypes === "any" ? ALL_TYPES : subTypes) {
      if (covers(supTypes, type)) continue;
      missing++;
      if (type === "null") missingNull = true;
    }
  }
  if (missing > 0) {
    const onlyNull = missing === 1 && missingNull;
    const { was, now } = versions(pass, subTypes, supTypes);
    found.push(
      reason(
        pass,
        "",
        onlyNull ? "nullable-removed" : "type-narrowed",
        onlyNull ? "nullable-added" : "type-widened",
        `type was ${typeText(was)}, now ${typeText(now)}`,
      ),
    );
  }
  const shared = (type: string) => accepts(subTypes, type) && accepts(supTypes, type);

  const subValues = valuesOf(sub);
  const supValues = valuesOf(sup);
  if (supValues && !subValues) {
    const list = supValues.map((value) => JSON.stringify(value)).join(", ");
    found.push(
      reason(
        pass,
        "",
        "enum-added",
        "enum-removed",
        pass.supIsNew ? `values are now limited to ${list}` : `values are no longer limited to ${list}`,
      ),
    );
  } else if (supValues && subValues) {
    const allowed = canonicalSet(supValues);
    for (const value of subValues) {
      if (allowed.has(canonical(value))) continue;
      found.push(valueReason(pass, value, "const" in sub && !("enum" in sub), "it is not among the allowed values"));
    }
  }

  if (shared("number") || shared("integer")) compareNumbers(sub, sup, pass, found);
  if (shared("string")) compareStrings(sub, sup, pass, found);
  if (shared("array")) compareArrays(sub, sup, pass, found);
  if (shared("object")) compareObjects(sub, sup, pass, found);
  if (typeof sup.format === "string" && sub.format !== sup.format && (shared("string") || shared("number"))) {
    found.push(changedAssertion(pass, "format", sub.format, sup.format));
  }

  if ("unevaluatedProperties" in sup || "unevaluatedItems" in sup) {
    if (canonical(sub) !== canonical(sup) || mentionsRef(sup)) {
      const keyword = "unevaluatedProperties" in sup ? "unevaluatedProperties" : "unevaluatedItems";
      found.push(undecidable(keyword, "its meaning depends on every keyword beside it, and those changed"));
    }
  }
  if ("if" in sup && ("then" in sup || "else" in sup)) {
    const same = ["if", "then", "else"].every(
      (key) => key in sub === key in sup && (!(key in sup) || equivalent(sub[key], sup[key], pass)),
    );
    if (!same) found.push(undecidable("if/then/else", "the conditional is not the same in both versions"));
  }
  for (const keyword of SAME_OR_UNDECIDABLE) {
    if (!(keyword in sup)) continue;
    // A $dynamicRef resolves by where it is evaluated from, which this checker does not follow.
    const same =
      keyword in sub &&
      keyword !== "$dynamicRef" &&
      (keyword === "not"
        ? equivalent(sub.not, sup.not, pass)
        : canonical(sub[keyword]) === canonical(sup[keyword]) && !mentionsRef(sup[keyword]));
    if (!same) found.push(undecidable(keyword, `"${keyword}" is not the same in both versions`));
  }
  return found;
}

function compareNumbers(sub: Node, sup: Node, pass: Pass, found: Reason[]): void {
  compareBound(found, pass, "minimum", lowerBound(sub), lowerBound(sup), "lower");
  compareBound(found, pass, "maximum", upperBound(sub), upperBound(sup), "upper");
  if (typeof sup.multipleOf === "number") {
    const subStep = typeof sub.multipleOf === "number" ? sub.multipleOf : undefined;
    if (subStep === undefined || !Number.isInteger(subStep / sup.multipleOf)) {
      found.push(changedAssertion(pass, "multipleOf", sub.multipleOf, sup.multipleOf));
    }
  }
}

function compareStrings(sub: Node, sup: Node, pass: Pass, found: Reason[]): void {
  compareBound(found, pass, "minLength", plainBound(sub.minLength), plainBound(sup.minLength), "lower");
  compareBound(found, pass, "maxLength", plainBound(sub.maxLength), plainBound(sup.maxLength), "upper");
  if (typeof sup.pattern === "string" && sub.pattern !== sup.pattern) {
    found.push(changedAssertion(pass, "pattern", sub.pattern, sup.pattern));
  }
}

function compareArrays(sub: Node, sup: Node, pass: Pass, found: Reason[]): void {
  const subPrefix = Array.isArray(sub.prefixItems) ? sub.prefixItems : [];
  const supPrefix = Array.isArray(sup.prefixItems) ? sup.prefixItems : [];
  for (let i = 0; i < Math.max(subPrefix.length, supPrefix.length); i++) {
    const subAt = i < subPrefix.length ? subPrefix[i] : (sub.items ?? true);
    const supAt = i < supPrefix.length ? supPrefix[i] : (sup.items ?? true);
    found.push(...within(`/prefixItems/${i}`, check(subAt, supAt, pass)));
  }
  found.push(...within("/items", check(sub.items ?? true, sup.items ?? true, pass)));
  compareBound(found, pass, "minItems", plainBound(sub.minItems), plainBound(sup.minItems), "lower");
  compareBound(found, pass, "maxItems", plainBound(sub.maxItems), plainBound(sup.maxItems), "upper");
  if (sup.uniqueItems === true && sub.uniqueItems !== true) {
    found.push(
      reason(
        pass,
        "",
        "uniqueItems-added",
        "uniqueItems-removed",
        pass.supIsNew ? "items must now be unique" : "items no longer have to be unique",
      ),
    );
  }
  if ("contains" in sup) {
    if ("contains" in sub) found.push(...within("/contains", check(sub.contains, sup.contains, pass)));
    else {
      found.push(
        reason(
          pass,
          "",
          "contains-added",
          "contains-removed",
          pass.supIsNew
            ? "arrays must now contain a matching item"
            : "arrays no longer have to contain a matching item",
        ),
      );
    }
  }
}

function compareObjects(sub: Node, sup: Node, pass: Pass, found: Reason[]): void {
  const subRequired: string[] = Array.isArray(sub.required) ? sub.required : [];
  for (const name of Array.isArray(sup.required) ? (sup.required as string[]) : []) {
    if (subRequired.includes(name)) continue;
    found.push(
      reason(
        pass,
        `/properties/${escapePointer(name)}`,
        "required-added",
        "required-removed",
        pass.supIsNew
          ? `property "${name}" is now required`
          : `property "${name}" is no longer required, so it may be absent`,
      ),
    );
  }
  const subProps = isNode(sub.properties) ? sub.properties : {};
  const supProps = isNode(sup.properties) ? sup.properties : {};
  const subRest = sub.additionalProperties ?? true;
  const supRest = sup.additionalProperties ?? true;
  const names = Object.keys(subProps);
  for (const name in supProps) if (!Object.hasOwn(subProps, name)) names.push(name);
  let patternsReadable = true;
  if ("patternProperties" in sub || "patternProperties" in sup) {
    const same =
      canonical(sub.patternProperties ?? {}) === canonical(sup.patternProperties ?? {}) &&
      !mentionsRef(sup.patternProperties);
    const patterns = Object.keys(isNode(sup.patternProperties) ? sup.patternProperties : {}).map(
      (pattern) => new RegExp(pattern, "u"),
    );
    if (!same || names.some((name) => patterns.some((pattern) => pattern.test(name)))) {
      patternsReadable = false;
      found.push(
        undecidable("patternProperties", "the patterns changed, or they overlap properties named beside them"),
      );
    }
  }
  if (patternsReadable) {
    for (const name of names) {
      found.push(...compareProperty(name, subProps, supProps, subRest, supRest, pass));
    }
    const subRestFlat = flatten(subRest, pass.sub);
    const supRestFlat = flatten(supRest, pass.sup);
    if (supRestFlat === false && subRestFlat !== false) {
      found.push(
        reason(
          pass,
          "/additionalProperties",
          "additional-properties-closed",
          "additional-properties-opened",
          pass.supIsNew
            ? "properties not named in the schema are now refused (additionalProperties: false)"
            : "properties not named in the schema are now allowed (additionalProperties was false)",
        ),
      );
    } else found.push(...within("/additionalProperties", check(subRest, supRest, pass)));
  }
  compareBound(found, pass, "minProperties", plainBound(sub.minProperties), plainBound(sup.minProperties), "lower");
  compareBound(found, pass, "maxProperties", plainBound(sub.maxProperties), plainBound(sup.maxProperties), "upper");
  if ("propertyNames" in sup) {
    found.push(...within("/propertyNames", check(sub.propertyNames ?? true, sup.propertyNames, pass)));
  }
  if (isNode(sup.dependentRequired)) {
    const subDeps = isNode(sub.dependentRequired) ? (sub.dependentRequired as Record<string, string[]>) : {};
    for (const [name, needs] of Object.entries(sup.dependentRequired as Record<string, string[]>)) {
      for (const need of needs) {
        if (subRequired.includes(need) || subDeps[name]?.includes(need)) continue;
        found.push(
          reason(
            pass,
            `/dependentRequired/${escapePointer(name)}`,
            "dependentRequired-added",
            "dependentRequired-removed",
            pass.supIsNew
              ? `property "${need}" is now required whenever "${name}" is present`
              : `property "${need}" is no longer required whenever "${name}" is present`,
          ),
        );
      }
    }
  }
  if (isNode(sup.dependentSchemas)) {
    const subDeps = isNode(sub.dependentSchemas) ? sub.dependentSchemas : {};
    for (const [name, schema] of Object.entries(sup.dependentSchemas)) {
      found.push(...within(`/dependentSchemas/${escapePointer(name)}`, check(subDeps[name] ?? true, schema, pass)));
    }
  }
}

function compareProperty(
  name: string,
  subProps: Node,
  supProps: Node,
  subRest: unknown,
  supRest: unknown,
  pass: Pass,
): Reason[] {
  const at = `/properties/${escapePointer(name)}`;
  const subDeclared = Object.hasOwn(subProps, name);
  const supDeclared = Object.hasOwn(supProps, name);
  const subSchema = subDeclared ? subProps[name] : subRest;
  const supSchema = supDeclared ? supProps[name] : supRest;
  const subFlat = flatten(subSchema, pass.sub);
  const supFlat = flatten(supSchema, pass.sup);
  if (subFlat === false) return [];
  if (supFlat === false) {
    const why = supDeclared ? "it is declared false" : "additionalProperties is false";
    return [
      reason(
        pass,
        at,
        "property-removed",
        "property-added",
        pass.supIsNew
          ? `property "${name}" is no longer accepted (${why})`
          : `property "${name}" may now be present, where the old version did not allow it (${why} there)`,
      ),
    ];
  }
  if (!subDeclared && subFlat === true && supFlat !== true) {
    // SUB leaves the name open to any value and SUP declares it.
    if (pass.supIsNew) {
      return [
        {
          ...reason(
            pass,
            at,
            "property-added",
            "property-removed",
            `property "${name}" is declared now; the old version's open object took any value under that name`,
          ),
          undeclared: true,
        },
      ];
    }
    return [
      reason(
        pass,
        at,
        "property-added",
        "property-removed",
        `property "${name}" is no longer declared, so it may be absent or hold any value`,
      ),
    ];
  }
  return within(at, check(subSchema, supSchema, pass));
}

// ---------------------------------------------------------------------------------------------------------------------
// Values of an enum or const, checked one by one against the other version.

function compareValues(values: unknown[], isConst: boolean, sup: Node, pass: Pass): Reason[] | undefined {
  const found: Reason[] = [];
  for (const value of values) {
    const refusal = refusalOf(value, sup, pass.sup, 0);
    if (refusal === undefined) return undefined;
    if (refusal !== null) found.push(valueReason(pass, value, isConst, refusal));
  }
  return found;
}

function valueReason(pass: Pass, value: unknown, isConst: boolean, why: string): Reason {
  const text = JSON.stringify(value);
  if (isConst) {
    return reason(
      pass,
      "",
      "const-changed",
      "const-changed",
      pass.supIsNew
        ? `the value ${text} was the one allowed and is refused now: ${why}`
        : `the new value ${text} was not allowed by the old version: ${why}`,
    );
  }
  return reason(
    pass,
    "",
    "enum-value-removed",
    "enum-value-added",
    pass.supIsNew
      ? `the value ${text} was allowed and is refused now: ${why}`
      : `the value ${text} is new; the old version did not allow it: ${why}`,
  );
}

/** Why SCHEMA refuses VALUE; null when it accepts it; undefined when this cannot tell. */
function refusalOf(value: unknown, schemaIn: unknown, doc: Doc, depth: number): string | null | undefined {
  if (depth > 32) return undefined;
  const schema = flatten(schemaIn, doc);
  if (schema === true) return null;
  if (schema === false) return "the schema there is false";
  if (schema instanceof Opaque) return undefined;
  const kind = jsonType(value);
  const types = typesOf({ type: schema.type, nullable: schema.nullable });
  if (!covers(types, kind)) return `its type ${kind} is not ${typeText(types)}`;
  const allowed = valuesOf(schema);
  if (allowed && !canonicalSet(allowed).has(canonical(value))) return "it is not among the allowed values";
  let unknown = false;
  for (const key of Object.keys(schema)) {
    if (!ASSERTIONS.has(key)) continue;
    const rule = schema[key];
    switch (key) {
      case "type":
      case "nullable":
      case "enum":
      case "const":
        break;
      case "minimum":
      case "exclusiveMinimum":
      case "maximum":
      case "exclusiveMaximum":
        if (typeof value === "number" && typeof rule === "number") {
          const ok =
            key === "minimum"
              ? value >= rule
              : key === "exclusiveMinimum"
                ? value > rule
                : key === "maximum"
                  ? value <= rule
                  : value < rule;
          if (!ok) return `it is outside ${key} ${rule}`;
        }
        break;
      case "multipleOf":
        if (typeof value === "number" && typeof rule === "number" && !Number.isInteger(value / rule)) {
          return `it is not a multiple of ${rule}`;
        }
        break;
      case "minLength":
      case "maxLength":
        if (typeof value === "string" && typeof rule === "number") {
          const length = [...value].length;
          if (key === "minLength" ? length < rule : length > rule) return `its length is outside ${key} ${rule}`;
        }
        break;
      case "pattern":
        if (typeof value === "string" && typeof rule === "string" && !new RegExp(rule, "u").test(value)) {
          return `it does not match the pattern ${rule}`;
        }
        break;
      case "anyOf":
      case "oneOf": {
        const verdicts = (rule as unknown[]).map((branch) => refusalOf(value, branch, doc, depth + 1));
        const matches = verdicts.filter((verdict) => verdict === null).length;
        if (verdicts.includes(undefined)) {
          if (key === "anyOf" && matches > 0) break;
          unknown = true;
        } else if (matches === 0) return `it matches no branch of ${key}`;
        else if (key === "oneOf" && matches > 1) return "it matches more than one branch of oneOf";
        break;
      }
      case "allOf":
        for (const member of rule as unknown[]) {
          const verdict = refusalOf(value, member, doc, depth + 1);
          if (typeof verdict === "string") return verdict;
          if (verdict === undefined) unknown = true;
        }
        break;
      case "not": {
        const verdict = refusalOf(value, rule, doc, depth + 1);
        if (verdict === null) return "it matches the schema under not";
        if (verdict === undefined) unknown = true;
        break;
      }
      case "format": {
        const verdict = typeof rule === "string" ? formatRefusal(rule, value) : null;
        if (typeof verdict === "string") return verdict;
        if (verdict === undefined) unknown = true;
        break;
      }
      default:
        // Object and array keywords do not apply to other values; the conditionals are not judged here.
        if (kind === "object" || kind === "array" || key === "if" || key === "$dynamicRef") unknown = true;
    }
  }
  return unknown ? undefined : null;
}

/** Why the format refuses the value, by the same ajv-formats checks the schema registry runs; undefined: cannot tell. */
function formatRefusal(name: string, value: unknown): string | null | undefined {
  const format = metaValidator?.formats[name];
  // Ajv with strict: false ignores a format it does not know, and so does the registry.
  if (format === undefined || format === true) return null;
  let test: RegExp | ((data: never) => boolean | Promise<unknown>);
  let applies = typeof value === "string";
  if (format instanceof RegExp || typeof format === "function") test = format;
  else {
    if (format.async) return undefined;
    test = format.validate as typeof test;
    applies = typeof value === (format.type ?? "string");
  }
  if (!applies) return null;
  const ok = test instanceof RegExp ? test.test(value as string) : test(value as never);
  if (typeof ok !== "boolean") return undefined;
  return ok ? null : `it is not a valid ${name}`;
}

// ---------------------------------------------------------------------------------------------------------------------
// Types, values and bounds.

const ALL_TYPES = ["null", "boolean", "object", "array", "number", "string"];

type Types = ReadonlySet<string> | "any";

function declaredTypes(node: Node): Set<string> | undefined {
  const raw = node.type;
  if (raw === undefined) return undefined;
  const types = new Set(Array.isArray(raw) ? (raw as string[]) : [raw as string]);
  if (node.nullable === true) types.add("null");
  return types;
}

function effectiveTypes(node: Node, doc: Doc): Types {
  const info = infoOf(node, doc);
  if (info.types) return info.types;
  info.types = "any"; // what a schema that reaches itself through its own branches is taken to allow
  let known: Types;
  known = typesOf(node);
  const branches = Array.isArray(node.anyOf) ? node.anyOf : Array.isArray(node.oneOf) ? node.oneOf : undefined;
  if (known === "any" && branches) {
    // Without a type of its own, a choice allows the types its branches allow.
    const union = new Set<string>();
    for (const branch of branches) {
      const flat = flatten(branch, doc);
      const types = flat === false ? new Set<string>() : isNode(flat) ? effectiveTypes(flat, doc) : "any";
      if (types === "any") {
        union.clear();
        break;
      }
      for (const type of types) union.add(type);
    }
    if (union.size > 0) known = union;
  }
  info.types = known;
  return known;
}

function typesOf(node: Node): Types {
  let types: Set<string> | undefined = declaredTypes(node);
  const values = valuesOf(node);
  if (values) {
    const ofValues = new Set(values.map(jsonType));
    types = types ? intersectTypes(ofValues, types) : ofValues;
  }
  return types ?? "any";
}

function intersectTypes(a: ReadonlySet<string>, b: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  for (const type of a) {
    if (b.has(type) || (type === "integer" && b.has("number"))) out.add(type);
    else if (type === "number" && b.has("integer")) out.add("integer");
  }
  return out;
}

function covers(types: Types, type: string): boolean {
  return types === "any" || types.has(type) || (type === "integer" && types.has("number"));
}

function accepts(types: Types, type: string): boolean {
  if (types === "any" || types.has(type)) return true;
  return (type === "number" && types.has("integer")) || (type === "integer" && types.has("number"));
}

function typeText(types: Types): string {
  return types === "any" ? "any" : types.size === 0 ? "nothing" : [...types].join(" | ");
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function valuesOf(node: Node): unknown[] | undefined {
  const hasConst = Object.hasOwn(node, "const");
  const list = Array.isArray(node.enum) ? node.enum : undefined;
  if (!hasConst) return list;
  if (!list) return [node.const];
  const key = canonical(node.const);
  return list.some((value) => canonical(value) === key) ? [node.const] : [];
}

const canonicalSets = new WeakMap<unknown[], Set<string>>();

function canonicalSet(values: unknown[]): Set<string> {
  let set = canonicalSets.get(values);
  if (!set) canonicalSets.set(values, (set = new Set(values.map(canonical))));
  return set;
}

/** JSON text with sorted keys, so that equal values compare equal. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isNode(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function mentionsRef(value: unknown): boolean {
  return value !== undefined && /"\$(dynamic)?ref"/.test(JSON.stringify(value));
}

interface Bound {
  value: number;
  exclusive: boolean;
}

function plainBound(value: unknown): Bound | undefined {
  return typeof value === "number" ? { value, exclusive: false } : undefined;
}

function lowerBound(node: Node): Bound | undefined {
  const inclusive = plainBound(node.minimum);
  const exclusive = typeof node.exclusiveMinimum === "number" ? node.exclusiveMinimum : undefined;
  if (exclusive === undefined) return inclusive;
  if (!inclusive || exclusive >= inclusive.value) return { value: exclusive, exclusive: true };
  return inclusive;
}

function upperBound(node: Node): Bound | undefined {
  const inclusive = plainBound(node.maximum);
  const exclusive = typeof node.exclusiveMaximum === "number" ? node.exclusiveMaximum : undefined;
  if (exclusive === undefined) return inclusive;
  if (!inclusive || exclusive <= inclusive.value) return { value: exclusive, exclusive: true };
  return inclusive;
}

function boundText(bound: Bound | undefined, side: "lower" | "upper"): string {
  if (!bound) return "none";
  const sign = side === "lower" ? (bound.exclusive ? ">" : "≥") : bound.exclusive ? "<" : "≤";
  return `${sign} ${bound.value}`;
}

/** A reason when SUP's bound is tighter than SUB's. Rules: `<name>-added|removed|raised|lowered`. */
function compareBound(
  found: Reason[],
  pass: Pass,
  name: string,
  subBound: Bound | undefined,
  supBound: Bound | undefined,
  side: "lower" | "upper",
): void {
  if (!supBound) return;
  if (subBound) {
    const tighter =
      side === "lower"
        ? supBound.value > subBound.value ||
          (supBound.value === subBound.value && supBound.exclusive && !subBound.exclusive)
        : supBound.value < subBound.value ||
          (supBound.value === subBound.value && supBound.exclusive && !subBound.exclusive);
    if (!tighter) return;
  }
  const { was, now } = versions(pass, subBound, supBound);
  const message = `${name} was ${boundText(was, side)}, now ${boundText(now, side)}`;
  if (!subBound) {
    found.push(reason(pass, "", `${name}-added`, `${name}-removed`, message));
    return;
  }
  const towardsTight = side === "lower" ? "raised" : "lowered";
  const towardsLoose = side === "lower" ? "lowered" : "raised";
  found.push(reason(pass, "", `${name}-${towardsTight}`, `${name}-${towardsLoose}`, message));
}

/** SUP has an assertion (format, pattern, multipleOf) that SUB lacks or has with another value. */
function changedAssertion(pass: Pass, name: string, subValue: unknown, supValue: unknown): Reason {
  const { was, now } = versions(pass, subValue, supValue);
  const text = (value: unknown) => (value === undefined ? "none" : JSON.stringify(value));
  const rule = subValue === undefined ? (pass.supIsNew ? `${name}-added` : `${name}-removed`) : `${name}-changed`;
  return { origin: origins++, path: "", rule, message: `${name} was ${text(was)}, now ${text(now)}` };
}

// ---------------------------------------------------------------------------------------------------------------------
// Disjointness: two schemas that cannot accept the same value (different types, values, or discriminator constants).

function disjointAcross(a: Schema, b: Schema, pass: Pass): boolean {
  return disjointWith(a, pass.sub, b, pass.sup);
}

function disjointSchemas(a: Schema, b: Schema, doc: Doc): boolean {
  return disjointWith(a, doc, b, doc);
}

function disjointWith(a: Schema, aDoc: Doc, b: Schema, bDoc: Doc): boolean {
  if (a === false || b === false) return true;
  if (a === true || b === true || a instanceof Opaque || b instanceof Opaque) return false;
  const aTypes = effectiveTypes(a, aDoc);
  const bTypes = effectiveTypes(b, bDoc);
  if (aTypes !== "any" && bTypes !== "any" && intersectTypes(aTypes, bTypes).size === 0) return true;
  const aValues = valuesOf(a);
  const bValues = valuesOf(b);
  if (aValues && bValues) {
    const keys = canonicalSet(bValues);
    if (!aValues.some((value) => keys.has(canonical(value)))) return true;
  }
  return discriminated(a, aDoc, b, bDoc) || discriminated(b, bDoc, a, aDoc);
}

/** A property A requires holds values B's declaration of it never accepts. */
function discriminated(a: Node, aDoc: Doc, b: Node, bDoc: Doc): boolean {
  if (!Array.isArray(a.required) || !isNode(a.properties) || !isNode(b.properties)) return false;
  const aProps = a.properties;
  const bProps = b.properties;
  return (a.required as string[]).some((name) => {
    if (!Object.hasOwn(aProps, name) || !Object.hasOwn(bProps, name)) return false;
    const aProp = flatten(aProps[name], aDoc);
    const bProp = flatten(bProps[name], bDoc);
    if (!isNode(aProp) || !isNode(bProp) || aProp instanceof Opaque || bProp instanceof Opaque) return false;
    const aValues = valuesOf(aProp);
    const bValues = valuesOf(bProp);
    if (!aValues || !bValues) return false;
    const keys = canonicalSet(bValues);
    return !aValues.some((value) => keys.has(canonical(value)));
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Reasons and changes.

function reason(pass: Pass, path: string, tightRule: string, looseRule: string, message: string): Reason {
  return { origin: origins++, path, rule: pass.supIsNew ? tightRule : looseRule, message };
}

function undecidable(construct: string, why: string): Reason {
  return {
    origin: origins++,
    path: "",
    rule: `undecidable: ${construct}`,
    message: `the checker cannot tell whether this ${construct} keeps compatibility${why ? `: ${why}` : ""}`,
    undecidable: true,
  };
}

/** The SUB and SUP values named as the old and the new version's. */
function versions<T>(pass: Pass, subValue: T, supValue: T): { was: T; now: T } {
  return pass.supIsNew ? { was: subValue, now: supValue } : { was: supValue, now: subValue };
}

function within(prefix: string, reasons: Reason[]): Reason[] {
  return reasons.length === 0 ? reasons : reasons.map((found) => ({ ...found, path: prefix + found.path }));
}

let origins = 0;

/** Each change once, at the first path where it was met. */
function once(reasons: Reason[]): Reason[] {
  if (reasons.length < 2) return reasons;
  const seen = new Set<number>();
  return reasons.filter((found) => !seen.has(found.origin) && seen.add(found.origin));
}

function unique(reasons: Reason[]): Reason[] {
  const seen = new Set<string>();
  return once(reasons).filter((found) => {
    const key = `${found.path}\u0000${found.rule}\u0000${found.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function toChange(found: Reason, direction: Direction): Change {
  return { direction, path: found.path, rule: found.rule, message: found.message };
}

function escapePointer(name: string): string {
  return /[~/]/.test(name) ? name.replace(/~/g, "~0").replace(/\//g, "~1") : name;
}

function isNode(value: unknown): value is Node {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Opaque);
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  return value === null ? "null" : `a ${typeof value}`;
}
