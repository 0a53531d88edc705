// The Grafana dashboard and Prometheus rules of docs/dashboards/ against a real runtime's /metrics: every metric, label
// and label value their PromQL names is one the runtime exports, and the files have what Grafana and Prometheus need.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { MIG_ERROR_CODES } from "../schemas/errors.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";
import { StreamClient } from "./helpers/stream-client.ts";

const DASHBOARD = new URL("../docs/dashboards/mig-grafana.json", import.meta.url);
const RULES = new URL("../docs/dashboards/mig-rules.yaml", import.meta.url);
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ["job", "instance"];
/** Series Prometheus itself writes for every target, beside what the target exports. */
const SCRAPE_SERIES = ["up"];
const SEVERITIES = new Set(["critical", "warning", "info"]);

// ---- The scenario: calls that make every family of metrics the dashboard and rules read ------------------------

/** Calls of test.held waiting to be let go, so that another tenant is active while fair turns are refused. */
const held: (() => void)[] = [];

const capabilities = [
  defineCapability(
    anyDescriptor("test.hang", ["unary"]),
    (_payload, { signal }) =>
      new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    anySchemas,
  ),
  defineCapability(
    anyDescriptor("test.throws", ["unary"]),
    () => {
      throw new Error("the provider failed");
    },
    anySchemas,
  ),
  defineCapability(
    anyDescriptor("test.held", ["unary"]),
    () => new Promise((resolve) => held.push(() => resolve({ ok: true }))),
    anySchemas,
  ),
  defineCapability(
    { ...anyDescriptor("test.old", ["unary"]), lifecycle: { deprecated: "use test.new" } },
    () => ({ ok: true }),
    anySchemas,
  ),
  defineStreamingCapability(
    anyDescriptor("test.stream.forever", ["server_stream"]),
    async (_payload, { emit }) => {
      for (let i = 0; ; i++) await emit({ i });
    },
    anySchemas,
  ),
  defineStreamingCapability(
    anyDescriptor("test.stream.fails", ["server_stream"]),
    async (_payload, { emit }) => {
      await emit({ i: 0 });
      throw new Error("the stream's provider failed");
    },
    anySchemas,
  ),
];

let t: TestRuntime;
let exposition: string;

const ACME = { tenant_id: "acme" };
const invoke = (capability: string, header: Record<string, unknown> = {}, payload: unknown = {}) =>
  t.post(`/mig/v0.1/invoke/${capability}`, { header: { ...ACME, ...header }, payload });

async function unaryInvocations(): Promise<void> {
  expect((await invoke("observatory.models.infer", {}, { input: "a b" })).status).toBe(200);
  expect((await invoke("observatory.models.infer", {}, {})).body.error.code).toBe("MIG_INVALID_REQUEST");
  expect((await invoke("test.throws")).body.error.code).toBe("MIG_INTERNAL");
  expect((await invoke("test.hang", { deadline_ms: 100 })).body.error.code).toBe("MIG_TIMEOUT");
  expect((await invoke("test.old")).status).toBe(200);
  const idempotency_key = randomUUID();
  for (let i = 0; i < 2; i++)
    expect((await invoke("observatory.models.infer", { idempotency_key }, { input: "once" })).status).toBe(200);

  const message_id = randomUUID();
  const cancelled = invoke("test.hang", { message_id });
  await waitFor("the invocation to be in flight", () => t.runtime.work.invocations.has(message_id));
  expect((await t.post(`/mig/v0.1/cancel/${message_id}`, { header: ACME })).body.status).toBe("cancelled");
  expect((await cancelled).body.error.details.cancelled).toBe(true);
}

async function streams(): Promise<void> {
  const client = await StreamClient.open(t.http.url);
  const completed = client.start("observatory.models.infer", { input: "x y z" });
  expect((await client.ended(completed.streamId)).at(-1)).toMatchObject({ kind: "response", end_stream: true });
  const failed = client.start("test.stream.fails", {});
  expect((await client.ended(failed.streamId)).at(-1)).toMatchObject({ end_stream: true });
  const timedOut = client.start("test.stream.forever", {}, { deadlineMs: 200 });
  expect((await client.ended(timedOut.streamId)).at(-1)).toMatchObject({ end_stream: true });

  // A consumer that stops reading: the provider waits for credit (paused), then the caller cancels.
  const paused = client.start("test.stream.forever", {});
  await client.until("a frame", () => client.of(paused.streamId).length > 0);
  client.ws.pause();
  await waitFor(
    "the stream to pause",
    async () => (await t.runtime.metrics.streamsPaused.get()).values[0]!.value === 1,
  );
  expect((await t.post(`/mig/v0.1/cancel/${paused.messageId}`, { header: ACME })).body.status).toBe("cancelled");
  client.ws.resume();
  await client.ended(paused.streamId);
  client.close();
}

async function subscriptionAndEvents(): Promise<SseClient> {
  const event_id = randomUUID();
  for (let i = 0; i < 2; i++)
    expect(
      (await t.post("/mig/v0.1/publish/orders.created", { header: ACME, event_id, payload: { n: 1 } })).status,
    ).toBe(200);
  const subscriber = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/orders.created?resume_cursor=0`, {
    "x-tenant-id": "acme",
  });
  await subscriber.waitForEvents(1);
  return subscriber;
}

/** One tenant over its fair turn while another is active: its next call waits MIG_FAIR_WAIT_MS and is refused. */
async function fairTurnRefused(): Promise<void> {
  const globex = t.post("/mig/v0.1/invoke/test.held", { header: { tenant_id: "globex" }, payload: {} });
  await waitFor("globex's call to run", () => held.length === 1);
  const acme = invoke("test.held");
  await waitFor("acme's call to run", () => held.length === 2);
  expect((await invoke("observatory.models.infer", {}, { input: "late" })).body.error.code).toBe("MIG_BACKPRESSURE");
  for (const release of held) release();
  expect((await globex).status).toBe(200);
  expect((await acme).status).toBe(200);
}

beforeAll(async () => {
  t = await startTestRuntime({
    capabilities,
    config: { streamWindow: 4, tenantFairInflight: 1, fairBusyUtilisation: 0, fairWaitMs: 100 },
  });
  await unaryInvocations();
  await streams();
  const subscriber = await subscriptionAndEvents();
  await fairTurnRefused();
  exposition = (await t.get("/metrics")).text;
  subscriber.close();
});
afterAll(() => t?.stop());

// ---- What the runtime exports -------------------------------------------------------------------------------------

/** A series name a query may select, with the labels it carries and, where samples showed them, their values. */
interface Series {
  labels: Set<string>;
  /** Values seen per label; a label without samples has none, and its values cannot be checked. */
  values: Map<string, Set<string>>;
}

type Catalog = Map<string, Series>;

/**
 * The series names of a scrape: each family's name, or for a histogram its `_bucket` (with `le`), `_sum` and `_count`.
 * Labels are those of the samples plus those the family declares in the runtime's registry, as a counter that has
 * not been counted yet (a bus restart, an actor crash) exports its name but no sample.
 */
function catalogOf(text: string, declaredLabels: (family: string) => readonly string[]): Catalog {
  const catalog: Catalog = new Map();
  for (const [, family, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const names = type === "histogram" ? [`${family}_bucket`, `${family}_sum`, `${family}_count`] : [family!];
    for (const name of names) {
      const labels = new Set([...TARGET_LABELS, ...declaredLabels(family!)]);
      if (name.endsWith("_bucket") && type === "histogram") labels.add("le");
      catalog.set(name, { labels, values: new Map() });
    }
  }
  for (const [, name, labelText] of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/gm)) {
    const series = catalog.get(name!);
    if (!series || labelText === undefined) continue;
    for (const [, label, value] of labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      series.labels.add(label!);
      const seen = series.values.get(label!) ?? new Set<string>();
      seen.add(value!);
      series.values.set(label!, seen);
    }
  }
  for (const name of SCRAPE_SERIES) catalog.set(name, { labels: new Set(TARGET_LABELS), values: new Map() });
  return catalog;
}

// ---- PromQL, as far as these files need it ---------------------------------------------------------------------

const AGGREGATIONS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"]);

interface Token {
  kind: "name" | "string" | "number" | "variable" | "punct" | "op";
  text: string;
}

interface Matcher {
  label: string;
  op: string;
  value: string;
}

interface Selector {
  name: string;
  matchers: Matcher[];
  at: number;
}

interface Grouping {
  keyword: string;
  labels: string[];
  /** Token range the labels apply to: an aggregation's argument, or the whole expression for vector matching. */
  from: number;
  to: number;
}

interface Aggregation {
  from: number;
  to: number;
  grouping?: Grouping;
}

interface Query {
  selectors: Selector[];
  groupings: Grouping[];
  aggregations: Aggregation[];
  usesHistogramQuantile: boolean;
}

const TOKEN =
  /\s+|#[^\n]*|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|(\d[\w.]*)|(\$\{?\w+\}?)|([A-Za-z_:][\w:]*)|([(){}[\],])|(=~|!~|!=|==|>=|<=|[-+*/%^=<>@])/y;

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < expr.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(expr);
    if (!m) throw new Error(`cannot read PromQL at "${expr.slice(at, at + 20)}" in: ${expr}`);
    const [, string, number, variable, name, punct, op] = m;
    if (string !== undefined) tokens.push({ kind: "string", text: string.slice(1, -1) });
    else if (number !== undefined) tokens.push({ kind: "number", text: number });
    else if (variable !== undefined) tokens.push({ kind: "variable", text: variable });
    else if (name !== undefined) tokens.push({ kind: "name", text: name });
    else if (punct !== undefined) tokens.push({ kind: "punct", text: punct });
    else if (op !== undefined) tokens.push({ kind: "op", text: op });
  }
  return tokens;
}

/** Index of the token closing the bracket opened at `open`. */
function closing(tokens: Token[], open: number): number {
  const pairs: Record<string, string> = { "(": ")", "{": "}", "[": "]" };
  const closer = pairs[tokens[open]!.text]!;
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    if (tokens[i]!.text === tokens[open]!.text && tokens[i]!.kind === "punct") depth++;
    else if (tokens[i]!.text === closer && tokens[i]!.kind === "punct" && --depth === 0) return i;
  }
  throw new Error(`unbalanced "${tokens[open]!.text}"`);
}

/** The metric selectors, label groupings and aggregations of one PromQL expression. */
function readQuery(expr: string): Query {
  const tokens = tokenize(expr);
  const query: Query = { selectors: [], groupings: [], aggregations: [], usesHistogramQuantile: false };
  const isOpen = (i: number) => tokens[i]?.kind === "punct" && tokens[i]!.text === "(";
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === "punct" && token.text === "[") {
      i = closing(tokens, i); // a range or subquery: durations and Grafana's $__rate_interval
      continue;
    }
    if (token.kind !== "name") continue;
    if (GROUPING.has(token.text)) {
      if (!isOpen(i + 1)) continue; // group_left without labels
      const end = closing(tokens, i + 1);
      const labels = tokens
        .slice(i + 2, end)
        .filter((t) => t.kind === "name")
        .map((t) => t.text);
      const grouping: Grouping = { keyword: token.text, labels, from: -1, to: tokens.length };
      if (token.text === "by" || token.text === "without") {
        // `sum by (l) (arg)` or `sum (arg) by (l)`: the labels apply to the aggregation's argument.
        const before = tokens[i - 1];
        const argument =
          before?.kind === "name"
            ? { from: end + 1, to: closing(tokens, end + 1) }
            : { from: matchingOpen(tokens, i - 1), to: i - 1 };
        grouping.from = argument.from;
        grouping.to = argument.to;
        const owner = query.aggregations.find((a) => a.from === argument.from && a.to === argument.to);
        if (owner) owner.grouping = grouping;
      }
      query.groupings.push(grouping);
      i = end;
      continue;
    }
    if (isOpen(i + 1)) {
      if (token.text === "histogram_quantile") query.usesHistogramQuantile = true;
      if (AGGREGATIONS.has(token.text)) query.aggregations.push({ from: i + 1, to: closing(tokens, i + 1) });
      continue; // a function call
    }
    if (AGGREGATIONS.has(token.text) && tokens[i + 1]?.text && GROUPING.has(tokens[i + 1]!.text)) {
      const open = closing(tokens, i + 2) + 1;
      query.aggregations.push({ from: open, to: closing(tokens, open) });
      continue;
    }
    if (KEYWORDS.has(token.text.toLowerCase())) continue;
    const selector: Selector = { name: token.text, matchers: [], at: i };
    if (tokens[i + 1]?.kind === "punct" && tokens[i + 1]!.text === "{") {
      const end = closing(tokens, i + 1);
      for (let j = i + 2; j < end; j += 4) {
        const [label, op, value] = [tokens[j], tokens[j + 1], tokens[j + 2]];
        if (label?.kind !== "name" || op?.kind !== "op" || value?.kind !== "string")
          throw new Error(`cannot read the matchers of ${token.text} in: ${expr}`);
        selector.matchers.push({ label: label.text, op: op.text, value: value.text });
      }
      i = end;
    }
    query.selectors.push(selector);
  }
  return query;
}

/** Index of the token opening the bracket closed at `close`. */
function matchingOpen(tokens: Token[], close: number): number {
  for (let i = close; i >= 0; i--) if (tokens[i]!.text === "(" && closing(tokens, i) === close) return i;
  throw new Error("unbalanced )");
}

/** The labels a recording rule's result carries: its outermost aggregations' `by` labels, else its selectors'. */
function labelsOfResult(query: Query, catalog: Catalog): Set<string> {
  const outermost = query.aggregations.filter(
    (a) => !query.aggregations.some((b) => b !== a && b.from < a.from && a.to < b.to),
  );
  const labels = new Set<string>();
  const selectorLabels = (from: number, to: number) =>
    query.selectors.filter((s) => s.at > from && s.at < to).flatMap((s) => [...(catalog.get(s.name)?.labels ?? [])]);
  if (outermost.length === 0) for (const l of selectorLabels(-1, Number.MAX_SAFE_INTEGER)) labels.add(l);
  for (const a of outermost) {
    if (a.grouping?.keyword === "by") for (const l of a.grouping.labels) labels.add(l);
    else if (a.grouping?.keyword === "without")
      for (const l of selectorLabels(a.from, a.to)) if (!a.grouping.labels.includes(l)) labels.add(l);
  }
  if (query.usesHistogramQuantile) labels.delete("le");
  return labels;
}

/** The literal values a matcher names, or undefined when it is a pattern or a Grafana variable. */
function literalValues(m: Matcher): string[] | undefined {
  if (m.value.includes("$")) return undefined;
  if (m.op === "=" || m.op === "!=") return [m.value];
  return /^[\w.:-]+(\|[\w.:-]+)*$/.test(m.value) ? m.value.split("|") : undefined;
}

/** What is wrong with one expression against the catalog: unknown metrics, labels and values. */
function problemsOf(where: string, expr: string, catalog: Catalog): string[] {
  const problems: string[] = [];
  let query: Query;
  try {
    query = readQuery(expr);
  } catch (err) {
    return [`${where}: ${(err as Error).message}`];
  }
  if (query.selectors.length === 0) problems.push(`${where}: selects no metric: ${expr}`);
  for (const s of query.selectors) {
    const series = catalog.get(s.name);
    if (!series) {
      problems.push(`${where}: ${s.name} is not exported by the runtime (nor recorded by an earlier rule)`);
      continue;
    }
    for (const m of s.matchers) {
      if (!series.labels.has(m.label)) {
        problems.push(`${where}: ${s.name} has no label ${m.label}`);
        continue;
      }
      const values = literalValues(m);
      if (!values || TARGET_LABELS.includes(m.label)) continue;
      const known = m.label === "code" ? new Set<string>(MIG_ERROR_CODES) : series.values.get(m.label);
      if (!known) problems.push(`${where}: no sample of ${s.name} in the scrape shows values of ${m.label}`);
      else for (const v of values) if (!known.has(v)) problems.push(`${where}: ${s.name}{${m.label}} is never "${v}"`);
    }
  }
  for (const g of query.groupings) {
    const covered = query.selectors.filter((s) => s.at > g.from && s.at < g.to && catalog.has(s.name));
    for (const label of g.labels)
      for (const s of covered)
        if (!catalog.get(s.name)!.labels.has(label))
          problems.push(`${where}: ${g.keyword} (${label}) but ${s.name} has no label ${label}`);
  }
  return problems;
}

/** Adds a recording rule's series to the catalog, with its labels and the values its sources showed. */
function record(name: string, expr: string, extraLabels: Record<string, string>, catalog: Catalog): void {
  const query = readQuery(expr);
  const labels = labelsOfResult(query, catalog);
  const values = new Map<string, Set<string>>();
  for (const label of labels) {
    const sources = query.selectors.map((s) => catalog.get(s.name)).filter((s) => s?.labels.has(label));
    if (sources.length > 0 && sources.every((s) => s!.values.has(label)))
      values.set(label, new Set(sources.flatMap((s) => [...s!.values.get(label)!])));
  }
  for (const [label, value] of Object.entries(extraLabels)) {
    labels.add(label);
    values.set(label, new Set([value]));
  }
  catalog.set(name, { labels, values });
}

// ---- The files ----------------------------------------------------------------------------------------------------

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { type?: string; uid?: string } }[];
  panels?: Panel[];
}

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
const groups: { name: string; rules: Rule[] }[] = parseYaml(readFileSync(RULES, "utf8")).groups;
const rules = groups.flatMap((g) => g.rules);
const allPanels: Panel[] = dashboard.panels.flatMap((p: Panel) => [p, ...(p.panels ?? [])]);
const dataPanels = allPanels.filter((p) => p.type !== "row");
const variables: { name: string; type: string; query: unknown; datasource?: { uid?: string } }[] =
  dashboard.templating.list;
/** Grafana's reference to the dashboard's `datasource` variable. */
const DATASOURCE = `\${datasource}`;

/** The catalog of the scrape, with the recorded series of the rules added in their order. */
function checkedCatalog(): { catalog: Catalog; problems: string[] } {
  const registry = t.runtime.metrics.registry;
  const catalog = catalogOf(exposition, (family) => {
    const metric = registry.getSingleMetric(family) as unknown as { labelNames?: readonly string[] } | undefined;
    return metric?.labelNames ?? [];
  });
  const problems: string[] = [];
  for (const rule of rules) {
    const name = rule.record ?? rule.alert;
    problems.push(...problemsOf(`rule ${name}`, rule.expr, catalog));
    if (rule.record) record(rule.record, rule.expr, rule.labels ?? {}, catalog);
  }
  return { catalog, problems };
}

describe("the dashboard and the rules name only what the runtime exports", () => {
  it("the scenario made a sample of every family whose label values the files name", () => {
    for (const [family, label, value] of [
      ["mig_invocations_total", "outcome", "completed"],
      ["mig_invocations_total", "outcome", "failed"],
      ["mig_invocations_total", "outcome", "cancelled"],
      ["mig_invocations_total", "outcome", "timed_out"],
      ["mig_streams_total", "outcome", "failed"],
      ["mig_streams_total", "outcome", "timed_out"],
      ["mig_streams_total", "outcome", "cancelled"],
      ["mig_actors_live", "state", "paused"],
      ["mig_fair_share_waits_total", "outcome", "refused"],
      ["mig_capability_version_calls_total", "deprecated", "true"],
      ["mig_subscriptions_active", "binding", "http"],
      ["mig_idempotent_replays_total", "capability", "observatory.models.infer"],
      ["mig_events_deduplicated_total", "topic", "orders.created"],
      ["mig_events_replayed_total", "topic", "orders.created"],
      ["mig_subscription_lag_events", "topic", "orders.created"],
    ])
      expect(exposition, `${family}{${label}="${value}"}`).toMatch(
        new RegExp(`^${family}\\{[^}]*${label}="${value.replaceAll(".", "\\.")}"`, "m"),
      );
  });

  it("every rule's PromQL selects exported metrics by labels and values they have", () => {
    expect(checkedCatalog().problems).toEqual([]);
  });

  it("every panel's and variable's PromQL selects exported or recorded metrics by labels and values they have", () => {
    const { catalog } = checkedCatalog();
    const problems: string[] = [];
    for (const panel of dataPanels)
      for (const target of panel.targets ?? [])
        problems.push(...problemsOf(`panel ${panel.id} "${panel.title}" ${target.refId}`, target.expr ?? "", catalog));
    for (const variable of variables.filter((v) => v.type === "query")) {
      const text = typeof variable.query === "string" ? variable.query : (variable.query as { query: string }).query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(text);
      if (!m) {
        problems.push(`variable ${variable.name}: not a label_values(selector, label) query: ${text}`);
        continue;
      }
      problems.push(...problemsOf(`variable ${variable.name}`, m[1]!, catalog));
      for (const s of readQuery(m[1]!).selectors)
        if (!catalog.get(s.name)?.labels.has(m[2]!))
          problems.push(`variable ${variable.name}: ${s.name} has no label ${m[2]}`);
    }
    expect(problems).toEqual([]);
  });

  it("a name the runtime does not export, a label it does not carry and a value it never takes are caught", () => {
    const { catalog } = checkedCatalog();
    expect(problemsOf("probe", 'sum(rate(mig_invocation_total{outcome="failed"}[5m]))', catalog)).toEqual([
      "probe: mig_invocation_total is not exported by the runtime (nor recorded by an earlier rule)",
    ]);
    expect(problemsOf("probe", "sum by (tenant) (rate(mig_invocations_total[5m]))", catalog)).toEqual([
      "probe: by (tenant) but mig_invocations_total has no label tenant",
    ]);
    expect(problemsOf("probe", 'mig_streams_total{outcome="timeout"}', catalog)).toEqual([
      'probe: mig_streams_total{outcome} is never "timeout"',
    ]);
    expect(problemsOf("probe", "histogram_quantile(0.9, rate(mig_invocation_duration_seconds[5m]))", catalog)).toEqual([
      "probe: mig_invocation_duration_seconds is not exported by the runtime (nor recorded by an earlier rule)",
    ]);
  });
});

describe("the files have what Grafana and Prometheus need", () => {
  it("every alert has a duration, a severity, a summary and a description; every record a level:metric:operation name", () => {
    const problems: string[] = [];
    for (const rule of rules) {
      if (rule.record) {
        if (!/^[a-z_]+:[a-z_]+:[a-z0-9_]+$/.test(rule.record))
          problems.push(`record ${rule.record}: not level:metric:op`);
        continue;
      }
      const name = rule.alert ?? "(unnamed)";
      if (!/^\d+[smh]$/.test(rule.for ?? "")) problems.push(`${name}: no for`);
      if (!SEVERITIES.has(rule.labels?.severity ?? "")) problems.push(`${name}: severity ${rule.labels?.severity}`);
      if (!rule.annotations?.summary?.trim()) problems.push(`${name}: no summary`);
      if ((rule.annotations?.description?.trim().length ?? 0) < 40) problems.push(`${name}: no description`);
    }
    expect(problems).toEqual([]);
    expect(rules.filter((r) => r.alert).length).toBeGreaterThan(0);
    expect(new Set(rules.map((r) => r.record ?? r.alert)).size).toBe(rules.length);
  });

  it("panel ids are unique, and every panel queries the dashboard's datasource variable", () => {
    const ids = allPanels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const problems: string[] = [];
    for (const panel of dataPanels) {
      if (panel.datasource?.type !== "prometheus" || panel.datasource.uid !== DATASOURCE)
        problems.push(`panel ${panel.id}: datasource ${JSON.stringify(panel.datasource)}`);
      if (!panel.targets?.length) problems.push(`panel ${panel.id}: no query`);
      for (const target of panel.targets ?? [])
        if (target.datasource && target.datasource.uid !== DATASOURCE)
          problems.push(`panel ${panel.id} ${target.refId}: datasource ${JSON.stringify(target.datasource)}`);
    }
    expect(problems).toEqual([]);
  });

  it("the dashboard has a Prometheus datasource variable, job and instance variables, and a current schema", () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(variables.find((v) => v.name === "datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    for (const name of ["job", "instance"])
      expect(variables.find((v) => v.name === name)).toMatchObject({ type: "query", datasource: { uid: DATASOURCE } });
  });
});
