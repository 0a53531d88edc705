// The MIG console page: reads the runtime's live feed (GET /admin/v0.1/console/events, Server-Sent Events) with
// fetch, so that it can send the bearer token EventSource cannot, and draws each snapshot. Plain script, no build step.
"use strict";

const FEED = "/admin/v0.1/console/events";
const TOKEN_KEY = "mig.console.token";
/** Waits before connecting again after the feed ended, doubling up to the last. */
const RETRY_MS = [1000, 2000, 5000, 10000];

let controller;
let retryTimer;
let retries = 0;

const $ = (id) => document.getElementById(id);

/** An element with attributes (a `class`, `data-*`, …) and children (nodes or text; null and undefined are skipped). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const num = (value) => el("td", { class: "num" }, value ?? "–");

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString();
}

/** A long id cut to its start, the whole of it in the tooltip. */
function shortId(id) {
  const text = String(id);
  return el("span", { title: text, class: "id" }, text.length > 14 ? `${text.slice(0, 12)}…` : text);
}

/** Replaces a table body's rows; an empty list shows one row saying so. */
function fill(tbodyId, items, row, empty) {
  const tbody = $(tbodyId);
  const columns = tbody.closest("table").querySelectorAll("thead th").length;
  const rows = items.length > 0 ? items.map(row) : [el("tr", { class: "empty" }, el("td", { colspan: columns }, empty))];
  tbody.replaceChildren(...rows);
}

function setStatus(status, text) {
  const node = $("status");
  node.dataset.status = status;
  node.textContent = text ?? status;
}

/** Shows why there is no data (a refusal, the runtime gone) and takes every figure off the page. */
function showProblem(text) {
  const problem = $("problem");
  problem.textContent = text;
  problem.hidden = false;
}

function clearData() {
  $("data").hidden = true;
  for (const id of ["capabilities", "actor-states", "finished", "oldest", "streams", "subscriptions", "errors", "audit"]) {
    $(id).replaceChildren();
  }
  $("work").replaceChildren();
  $("where").textContent = "not connected";
}

// ── drawing a snapshot ─────────────────────────────────────────────────────────────────────────────

function drawWork(snapshot) {
  const { work, actors } = snapshot;
  const figures = [
    ["Invocations in flight", `${work.invocations_in_flight} of ${work.capacity}`],
    ["Streams", work.streams],
    ["Subscriptions", work.subscriptions],
    ["Live actors", actors.shown ? actors.live : "–"],
  ];
  $("work").replaceChildren(...figures.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
}

function drawCapabilities(capabilities) {
  fill(
    "capabilities",
    capabilities,
    (c) =>
      el(
        "tr",
        { "data-capability": c.id, "data-version": c.version },
        el("td", {}, c.id, c.lifecycle?.deprecated ? el("span", { class: "tag warn" }, "deprecated") : null),
        el("td", {}, c.version),
        el("td", {}, (c.modes ?? []).join(", ")),
        el("td", {}, el("span", { class: `health ${c.health}` }, c.health.replace("_", " "))),
        el(
          "td",
          { class: "providers" },
          ...c.providers.map((p) =>
            el(
              "span",
              { class: `provider ${p.health}`, title: `${p.kind} ${p.provider_id}, heard ${duration(p.silent_ms)} ago` },
              `${p.kind === "local" ? "this process" : `${p.kind} ${p.provider_id}`}`,
            ),
          ),
        ),
        el("td", { class: "num in-flight" }, c.in_flight),
      ),
    "No capability is registered.",
  );
}

function drawActors(actors) {
  $("actors-hidden").hidden = actors.shown;
  $("actors-shown").hidden = !actors.shown;
  if (!actors.shown) {
    $("actors-hidden").textContent = `Live actors ${actors.reason}.`;
    return;
  }
  fill(
    "actor-states",
    actors.by_state,
    (t) =>
      el(
        "tr",
        { "data-kind": t.kind, "data-state": t.state, class: t.live > 0 ? "live" : "past" },
        el("td", {}, t.kind),
        el("td", {}, t.state),
        el("td", { class: "num live" }, t.live),
        el("td", { class: "num entered" }, t.entered),
      ),
    "No actor has run yet.",
  );
  const finished = actors.recently_finished;
  $("finished-count").textContent = `(the last ${finished.count})`;
  fill(
    "finished",
    finished.by_state,
    (f) =>
      el(
        "tr",
        { "data-kind": f.kind, "data-state": f.state },
        el("td", {}, f.kind),
        el("td", {}, el("span", { class: `final ${f.state}` }, f.state)),
        el("td", { class: "num count" }, f.count),
        el("td", {}, clock(f.last_ended_at)),
      ),
    "No actor has ended yet.",
  );
  fill(
    "oldest",
    actors.oldest,
    (a) =>
      el(
        "tr",
        { "data-actor": a.id, "data-kind": a.kind, "data-state": a.state },
        el("td", {}, shortId(a.id)),
        el("td", {}, a.kind),
        el("td", {}, a.state),
        num(duration(a.age_ms)),
      ),
    "No actor is live.",
  );
}

function more(part, noun) {
  return part.truncated ? ` The ${part.list.length} listed are the first of ${part.total} ${noun}.` : "";
}

function drawStreams(streams) {
  $("streams-summary").textContent =
    `${streams.total} open, ${streams.paused} paused for want of credit.${more(streams, "streams")}`;
  fill(
    "streams",
    streams.list,
    (s) =>
      el(
        "tr",
        { "data-stream": s.message_id, class: s.paused ? "paused" : undefined },
        el("td", {}, shortId(s.message_id)),
        el("td", {}, s.tenant_id),
        el("td", {}, s.capability),
        el("td", {}, s.runs_here ? s.state : "handed to a worker"),
        num(s.credit === null ? null : `${s.credit} / ${s.window}`),
        num(s.held),
        el("td", { class: "paused-flag" }, s.paused === null ? "–" : s.paused ? "paused" : "no"),
      ),
    "No stream is open.",
  );
}

function drawSubscriptions(subscriptions) {
  $("subscriptions-summary").textContent =
    `${subscriptions.total} open, ${subscriptions.paused} paused, ${subscriptions.lag_total} events behind in all.` +
    more(subscriptions, "subscriptions");
  fill(
    "subscriptions",
    subscriptions.list,
    (s) =>
      el(
        "tr",
        { "data-subscription": s.subscription_id, "data-state": s.state, class: s.state === "paused" ? "paused" : undefined },
        el("td", {}, shortId(s.subscription_id), s.consumer_id ? el("span", { class: "muted" }, ` ${s.consumer_id}`) : null),
        el("td", {}, s.tenant_id),
        el("td", {}, s.topic),
        el("td", { class: "state" }, s.state),
        el("td", { class: "num lag" }, s.lag ?? "unknown"),
        num(s.last_sequence),
        num(s.topic_last_sequence),
        num(s.pauses),
      ),
    "No subscription is open.",
  );
}

function drawErrors(errors) {
  $("errors-hidden").hidden = errors.shown;
  $("errors-table").hidden = !errors.shown;
  if (!errors.shown) {
    $("errors-hidden").textContent = `Error counts ${errors.reason}.`;
    return;
  }
  $("errors-window").textContent = `Last ${errors.window_s} s`;
  fill(
    "errors",
    errors.by_code,
    (e) =>
      el(
        "tr",
        { "data-code": e.code, class: e.recent > 0 ? "recent" : undefined },
        el("td", {}, e.code),
        el("td", { class: "num recent" }, e.recent),
        el("td", { class: "num total" }, e.total),
        el(
          "td",
          { class: "muted" },
          Object.entries(e.by_operation)
            .map(([operation, count]) => `${operation || "?"} ${count}`)
            .join(", "),
        ),
      ),
    "No error has been answered since the process started.",
  );
}

function drawAudit(audit) {
  $("audit-problem").hidden = !audit.error;
  if (audit.error) $("audit-problem").textContent = `The audit log could not be read: ${audit.error.message}`;
  fill(
    "audit",
    audit.records,
    (r) =>
      el(
        "tr",
        { "data-seq": r.seq, class: r.decision === "deny" ? "denied" : undefined },
        el("td", {}, clock(r.ts)),
        el("td", {}, r.kind),
        el("td", {}, r.actor),
        el("td", {}, r.tenant || "–"),
        el("td", {}, r.operation),
        el("td", {}, r.target ?? ""),
        el("td", {}, r.decision),
        el("td", {}, r.code ? `${r.outcome} ${r.code}` : r.outcome),
      ),
    "No audit record yet.",
  );
}

function draw(snapshot) {
  const scope = snapshot.scope.every_tenant ? "every tenant" : `tenant ${snapshot.scope.tenant_id}`;
  $("where").textContent = `${snapshot.server_id} · ${scope} · ${clock(snapshot.generated_at)}`;
  drawWork(snapshot);
  drawCapabilities(snapshot.capabilities);
  drawActors(snapshot.actors);
  drawStreams(snapshot.streams);
  drawSubscriptions(snapshot.subscriptions);
  drawErrors(snapshot.errors);
  drawAudit(snapshot.audit);
  $("problem").hidden = true;
  $("data").hidden = false;
}

// ── the feed ───────────────────────────────────────────────────────────────────────────────────────

/** The MIG error of a refused request, as a sentence: its code and message. */
async function refusal(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return `${body.error.code}: ${body.error.message}`;
  } catch {
    // Not a MIG envelope (a proxy's page): the status says what there is to say.
  }
  return `HTTP ${res.status} ${res.statusText}`;
}

function later(why) {
  const wait = RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
  retries++;
  setStatus("retrying", `${why}; connecting again in ${wait / 1000} s`);
  retryTimer = setTimeout(connect, wait);
}

/** Calls `onEvent(name, data)` for each event of an SSE body; resolves when the body ends. */
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.search(/\r?\n\r?\n/); end !== -1; end = buffer.search(/\r?\n\r?\n/)) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (data.length > 0) onEvent(name, data.join("\n"));
    }
  }
}

async function connect() {
  controller?.abort();
  clearTimeout(retryTimer);
  const mine = new AbortController();
  controller = mine;
  const headers = { accept: "text/event-stream" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  setStatus("connecting", "connecting…");
  let res;
  try {
    res = await fetch(FEED, { headers, signal: mine.signal, cache: "no-store", credentials: "omit" });
  } catch {
    if (!mine.signal.aborted) later("the runtime did not answer");
    return;
  }
  if (!res.ok) {
    const sentence = await refusal(res);
    clearData();
    showProblem(sentence);
    if (res.status === 401 || res.status === 403) {
      // A refused credential stays refused: wait for another token rather than ask again and again.
      setStatus("refused", token ? "refused: paste a token with the admin scope" : "a token is needed");
      return;
    }
    later(`refused with ${res.status}`);
    return;
  }
  setStatus("live", "live");
  try {
    await readEvents(res.body, (name, data) => {
      if (name === "snapshot") {
        retries = 0;
        draw(JSON.parse(data));
      } else if (name === "mig-error") {
        const { error } = JSON.parse(data);
        showProblem(`The last snapshot could not be made: ${error.code}: ${error.message}`);
      }
    });
  } catch {
    // The connection broke (the runtime restarted, the network went): connect again below.
  }
  if (!mine.signal.aborted) later("the feed ended");
}

document.addEventListener("DOMContentLoaded", () => {
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    retries = 0;
    void connect();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    controller?.abort();
    clearTimeout(retryTimer);
    clearData();
    setStatus("idle", "token forgotten");
  });
  void connect();
});
