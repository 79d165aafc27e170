// The services overview: per service (and, expanded, per operation) the request
// rate, error share and p50/p95/p99 duration over a window, with sparklines of
// rate and p95 whose exemplar dots open traces. Everything comes from TraceQL
// metrics (`/api/metrics/query`, `/api/metrics/query_range`).
//
// Rows count SERVER spans, not root spans: only the edge service (the gateway)
// has roots, while every service answers requests as server spans, so
// `{ kind = server }` gives each service its own RED numbers.
import * as api from "./api.js";
import { h, mount } from "./dom.js";
import { formatDuration, formatTime, padTraceId, serviceColors } from "./model.js";

/** Windows offered, with the step that gives about 60 points per sparkline. */
const WINDOWS = [
  ["15m", 15 * 60, "15s"],
  ["1h", 60 * 60, "60s"],
  ["6h", 6 * 60 * 60, "360s"],
];

const SVC = "resource.service.name";
const SVG_NS = "http://www.w3.org/2000/svg";
const SPARK_W = 140;
const SPARK_H = 30;

/** A TraceQL string literal. */
export function quote(s) {
  return JSON.stringify(String(s));
}

/** The span selector of a row: a service, or one operation of it. */
export function selector(service, op) {
  const parts = [];
  if (service !== undefined) parts.push(`${SVC} = ${quote(service)}`);
  parts.push("kind = server");
  if (op !== undefined) parts.push(`name = ${quote(op)}`);
  return `{ ${parts.join(" && ")} }`;
}

/** The metrics queries behind a table: `cond` narrows the spans, `by` groups them. */
export function queries(cond, by) {
  const all = `{ ${cond} }`;
  const errors = `{ ${cond} && status = error }`;
  return {
    rate: `${all} | rate() by (${by})`,
    errors: `${errors} | rate() by (${by})`,
    quantiles: `${all} | quantile_over_time(duration, .5, .95, .99) by (${by})`,
    p95: `${all} | quantile_over_time(duration, .95) by (${by})`,
  };
}

function label(series, key) {
  const l = (series.labels || []).find((x) => x.key === key);
  if (!l || !l.value) return undefined;
  const v = l.value;
  if ("stringValue" in v) return v.stringValue;
  if ("doubleValue" in v) return Number(v.doubleValue);
  if ("intValue" in v) return Number(v.intValue);
  return undefined;
}

/** jsonpb omits a zero value, and writes NaN as a string. */
function num(v) {
  return v === undefined ? 0 : Number(v);
}

function byKey(res, key) {
  const out = new Map();
  for (const s of res.series || []) {
    const k = label(s, key);
    if (k === undefined) continue;
    if (!out.has(k)) out.set(k, []);
    out.get(k).push(s);
  }
  return out;
}

/** Folds the four answers into rows keyed by the `by` label's value. */
export function buildRows(key, { rate, errors, quantiles, rateRange, p95Range }) {
  const rows = new Map();
  const row = (k) => {
    if (!rows.has(k)) rows.set(k, { key: k, rate: 0, errorRate: 0, p50: NaN, p95: NaN, p99: NaN, rateSeries: null, p95Series: null });
    return rows.get(k);
  };
  for (const [k, ss] of byKey(rate, key)) row(k).rate = num(ss[0].value);
  for (const [k, ss] of byKey(errors, key)) row(k).errorRate = num(ss[0].value);
  for (const [k, ss] of byKey(quantiles, key)) {
    const r = row(k);
    for (const s of ss) {
      const p = label(s, "p");
      const v = num(s.value);
      if (p === 0.5) r.p50 = v;
      else if (p === 0.95) r.p95 = v;
      else if (p === 0.99) r.p99 = v;
    }
  }
  for (const [k, ss] of byKey(rateRange, key)) if (rows.has(k)) rows.get(k).rateSeries = ss[0];
  for (const [k, ss] of byKey(p95Range, key)) if (rows.has(k)) rows.get(k).p95Series = ss[0];
  // A row with no request in the window (e.g. only an error series) is dropped.
  return [...rows.values()].filter((r) => r.rate > 0).sort((a, b) => String(a.key).localeCompare(String(b.key)));
}

/**
 * Runs the queries for one table; answers `{rows, partial}`. Tempo hangs each
 * trace's exemplar on the series of the first span it counted, so in grouped
 * range queries the edge service (first in every trace) takes all the dots. With
 * `perRow` the sparklines come from one range query per row instead, and every
 * service gets exemplars of its own (2 queries per row; used for services, while
 * operations share grouped queries).
 */
async function load(cond, key, win, signal, perRow = false) {
  const q = queries(cond, key);
  const { start, end, step } = win;
  const [rate, errors, quantiles] = await Promise.all([
    api.metricsInstant({ q: q.rate, start, end }, signal),
    api.metricsInstant({ q: q.errors, start, end }, signal),
    api.metricsInstant({ q: q.quantiles, start, end }, signal),
  ]);
  let rateRange, p95Range;
  let ranges;
  if (perRow) {
    const keys = [...byKey(rate, key).keys()];
    ranges = await Promise.all(keys.flatMap((k) => {
      const one = queries(`${cond} && ${key} = ${quote(k)}`, key);
      return [api.metricsRange({ q: one.rate, start, end, step }, signal), api.metricsRange({ q: one.p95, start, end, step }, signal)];
    }));
    rateRange = { series: ranges.filter((_, i) => i % 2 === 0).flatMap((a) => a.series || []) };
    p95Range = { series: ranges.filter((_, i) => i % 2 === 1).flatMap((a) => a.series || []) };
  } else {
    ranges = await Promise.all([api.metricsRange({ q: q.rate, start, end, step }, signal), api.metricsRange({ q: q.p95, start, end, step }, signal)]);
    [rateRange, p95Range] = ranges;
  }
  const answers = [rate, errors, quantiles, ...ranges];
  const partial = answers.map((a) => a.status === "PARTIAL" && (a.message || "partial answer")).filter(Boolean);
  return { rows: buildRows(key, { rate, errors, quantiles, rateRange, p95Range }), partial };
}

export function formatRate(r) {
  if (!(r > 0)) return "0";
  if (r >= 100) return r.toFixed(0);
  return String(Number(r.toPrecision(3)));
}

/** One decimal from 1 % up (10.0 %, not 10 % for a ratio that lands on 9.999…), two digits below. */
export function formatPercent(p) {
  if (!(p > 0)) return "0%";
  return `${p >= 0.995 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

function dur(seconds) {
  return Number.isFinite(seconds) && seconds > 0 ? formatDuration(seconds * 1e9, true) : "–";
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

/**
 * A sparkline of one series, with a dot per exemplar linking to its trace.
 * `exemplarY` says where a dot sits: the exemplar's own value (durations) or the
 * value of the step it fell in (rates, whose exemplars carry NaN).
 */
export function sparkline(series, { what, unit, exemplarOwnValue, onOpen }) {
  const samples = ((series && series.samples) || []).map((p) => [Number(p.timestampMs), num(p.value)]);
  const exemplars = ((series && series.exemplars) || []).map((e) => ({
    ts: Number(e.timestampMs),
    value: num(e.value),
    trace: label(e, "trace:id"),
    span: label(e, "span:id"),
  })).filter((e) => e.trace);
  const box = svg("svg", {
    class: "spark", width: SPARK_W, height: SPARK_H, viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
    role: "img", "aria-label": `${what} over the window`, "data-what": what,
  });
  if (samples.length < 2) return box;
  const t0 = samples[0][0];
  const t1 = samples[samples.length - 1][0];
  const stepAt = (ts) => samples.find((s) => s[0] >= ts) || samples[samples.length - 1];
  const yOf = (e) => (exemplarOwnValue && Number.isFinite(e.value) ? e.value : stepAt(e.ts)[1]);
  const max = Math.max(1e-12, ...samples.map((s) => s[1]), ...exemplars.map(yOf).filter(Number.isFinite));
  const pad = 3;
  const x = (ts) => pad + ((ts - t0) / Math.max(1, t1 - t0)) * (SPARK_W - 2 * pad);
  const y = (v) => SPARK_H - pad - (Math.min(v, max) / max) * (SPARK_H - 2 * pad);
  const points = samples.map(([ts, v]) => `${x(ts).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  box.append(
    svg("title", null, `${what}: click to search these spans`),
    svg("polyline", { class: "spark-line", points, fill: "none" }),
  );
  for (const e of exemplars) {
    const id = padTraceId(e.trace);
    const hint = exemplarOwnValue && Number.isFinite(e.value) && e.value > 0
      ? `${formatDuration(e.value * 1e9)} — ` : "";
    const a = svg("a", { href: `/trace/${id}${e.span ? `#span=${e.span}` : ""}`, class: "exemplar", "data-trace-id": id },
      svg("title", null, `${hint}trace ${id} at ${formatTime(e.ts * 1e6)}`),
      svg("circle", { cx: x(Math.min(Math.max(e.ts, t0), t1)).toFixed(1), cy: y(yOf(e)).toFixed(1), r: 2.6 }));
    box.append(a);
  }
  box.addEventListener("click", (ev) => {
    if (ev.target.closest && ev.target.closest("a")) return;
    onOpen();
  });
  box.dataset.points = String(samples.length);
  box.dataset.exemplars = String(exemplars.length);
  box.dataset.unit = unit;
  return box;
}

function readWindow() {
  const url = new URLSearchParams(location.search);
  const name = url.get("range") || "15m";
  const w = WINDOWS.find((x) => x[0] === name) || WINDOWS[0];
  // `end` (unix seconds) pins the window, so a view can be shared as a link.
  const pinned = Number(url.get("end"));
  const end = Number.isFinite(pinned) && pinned > 0 ? Math.floor(pinned) : Math.floor(Date.now() / 1000);
  return { name: w[0], seconds: w[1], step: w[2], start: end - w[1], end, pinned: Number.isFinite(pinned) && pinned > 0 };
}

export function renderServices(root) {
  document.title = "Services · Trace desk";
  let win = readWindow();
  let controller = null;

  const buttons = WINDOWS.map(([name]) => h("button", {
    type: "button", class: "seg", dataset: { range: name },
    onclick: () => {
      const url = new URLSearchParams(location.search);
      url.set("range", name);
      history.replaceState(null, "", `/services?${url}`);
      win = readWindow();
      run();
    },
  }, name === "15m" ? "15 min" : name === "1h" ? "1 hour" : "6 hours"));
  const refresh = h("button", { type: "button", id: "services-refresh", onclick: () => { win = readWindow(); run(); } }, "Refresh");
  const windowNote = h("span", { class: "muted", id: "services-window", "aria-live": "polite" });
  const errorBox = h("div", { id: "services-error", class: "error-box", role: "alert", hidden: true });
  const partialBox = h("div", { id: "services-partial", class: "partial-box", role: "status", hidden: true });
  const tbody = h("tbody");
  const table = h("table", { id: "services", class: "results services", "aria-labelledby": "services-heading" },
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Service / operation"),
      h("th", { scope: "col", class: "num" }, "Rate (req/s)"),
      h("th", { scope: "col" }, "Rate over time"),
      h("th", { scope: "col", class: "num" }, "Errors"),
      h("th", { scope: "col", class: "num" }, "p50"),
      h("th", { scope: "col", class: "num" }, "p95"),
      h("th", { scope: "col", class: "num" }, "p99"),
      h("th", { scope: "col" }, "p95 over time"),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Search")))),
    tbody);

  mount(root,
    h("section", { class: "panel" },
      h("h1", { id: "services-heading" }, "Services"),
      h("div", { class: "services-bar" },
        h("div", { class: "segmented", role: "group", "aria-label": "Window" }, buttons),
        refresh, windowNote),
      h("p", { class: "hint" },
        "Requests are the SERVER spans each service handled, from TraceQL metrics (",
        h("code", null, "{ kind = server } | rate() by (resource.service.name)"),
        " and friends). Click a service to see its operations, a sparkline to search its spans, a dot to open that trace.")),
    errorBox,
    h("section", { class: "panel results-panel" }, partialBox, table));

  function showError(e) {
    mount(errorBox,
      h("strong", null, e.status ? `The server rejected the metrics query (${e.status}):` : "Metrics query failed:"),
      " ", h("span", { class: "error-message" }, e.message),
      e.status === 404
        ? h("p", { class: "hint" }, "This backend may not serve TraceQL metrics (/api/metrics/query_range); Tempo needs the local-blocks processor for them.")
        : null);
    errorBox.hidden = false;
  }

  function showPartial(reasons) {
    if (!reasons.length) return;
    mount(partialBox, h("strong", null, "Partial results: "),
      "a metrics query stopped before inspecting everything, so the numbers may be low.",
      h("span", { class: "partial-reason" }, " ", reasons[0]));
    partialBox.hidden = false;
  }

  const search = (q) => location.assign(`/?${new URLSearchParams({ q })}`);

  function cells(r, service, op) {
    const sel = selector(service, op);
    const errPct = r.rate > 0 ? (100 * r.errorRate) / r.rate : 0;
    const open = () => search(sel);
    return [
      h("td", { class: "num rate", dataset: { value: String(r.rate) } }, formatRate(r.rate)),
      h("td", { class: "spark-cell" }, sparkline(r.rateSeries, { what: "rate", unit: "req/s", exemplarOwnValue: false, onOpen: open })),
      h("td", { class: `num errors${errPct > 0 ? " err-mark" : ""}`, dataset: { value: String(errPct) } }, formatPercent(errPct)),
      h("td", { class: "num p50", dataset: { value: String(r.p50) } }, dur(r.p50)),
      h("td", { class: "num p95", dataset: { value: String(r.p95) } }, dur(r.p95)),
      h("td", { class: "num p99", dataset: { value: String(r.p99) } }, dur(r.p99)),
      h("td", { class: "spark-cell" }, sparkline(r.p95Series, { what: "p95", unit: "s", exemplarOwnValue: true, onOpen: open })),
      h("td", null, h("a", { href: `/?${new URLSearchParams({ q: sel })}`, class: "search-link", title: sel }, "Spans →")),
    ];
  }

  async function expand(tr, service, btn) {
    const open = btn.getAttribute("aria-expanded") === "true";
    for (const el of tbody.querySelectorAll(`tr.op-row`)) if (el.dataset.service === service) el.remove();
    if (open) {
      btn.setAttribute("aria-expanded", "false");
      tr.opsToken = (tr.opsToken || 0) + 1;
      delete tr.dataset.ops;
      return;
    }
    btn.setAttribute("aria-expanded", "true");
    tr.dataset.ops = "loading";
    // A second click (collapse) while loading must win over this answer.
    const token = (tr.opsToken = (tr.opsToken || 0) + 1);
    try {
      const { rows, partial } = await load(`${SVC} = ${quote(service)} && kind = server`, "name", win, controller.signal);
      if (tr.opsToken !== token || btn.getAttribute("aria-expanded") !== "true") return;
      showPartial(partial);
      let after = tr;
      for (const r of rows) {
        const op = String(r.key);
        const row = h("tr", { class: "op-row", dataset: { service, op } },
          h("th", { scope: "row", class: "op-name" }, h("span", { class: "op" }, op)),
          cells(r, service, op));
        after.after(row);
        after = row;
      }
      tr.dataset.ops = String(rows.length);
    } catch (e) {
      if (e.name === "AbortError") return;
      showError(e);
      tr.dataset.ops = "error";
    }
  }

  async function run() {
    if (controller) controller.abort();
    controller = new AbortController();
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.range === win.name));
    windowNote.textContent = `${formatTime(win.start * 1e9)} – ${formatTime(win.end * 1e9)}${win.pinned ? " (pinned)" : ""}, step ${win.step}`;
    errorBox.hidden = true;
    partialBox.hidden = true;
    root.dataset.state = "loading";
    try {
      const { rows, partial } = await load("kind = server", SVC, win, controller.signal, true);
      showPartial(partial);
      const colors = serviceColors(rows.map((r) => String(r.key)));
      const frag = document.createDocumentFragment();
      for (const r of rows) {
        const service = String(r.key);
        const btn = h("button", { type: "button", class: "svc-toggle", "aria-expanded": "false", title: "Show operations" },
          h("span", { class: "root-service", style: { "--svc": colors.get(service) } }, service));
        const tr = h("tr", { class: `svc-row${r.errorRate > 0 ? " has-error" : ""}`, dataset: { service } },
          h("th", { scope: "row" }, btn),
          cells(r, service));
        btn.addEventListener("click", () => expand(tr, service, btn));
        frag.append(tr);
      }
      mount(tbody, frag);
      if (!rows.length) {
        tbody.append(h("tr", null, h("td", { colspan: 9, class: "empty" },
          "No server spans in this window. Send some traffic (fleet load) or pick a longer window.")));
      }
      root.dataset.state = "done";
    } catch (e) {
      if (e.name === "AbortError") return;
      mount(tbody);
      showError(e);
      root.dataset.state = "error";
    }
  }

  run();
}
