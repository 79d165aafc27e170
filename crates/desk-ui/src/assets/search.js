// The search page: TraceQL box with examples, service / tags / duration filters,
// and the list of matching traces (newest first, as the API answers).
import * as api from "./api.js";
import { h, mount } from "./dom.js";
import { ago, formatDuration, formatTime, hitStats, padTraceId, serviceColors } from "./model.js";

const EXAMPLES = [
  ["All traces", "{}"],
  ["Errors", "{ status = error }"],
  ["One service", '{ resource.service.name = "order-api" }'],
  ["Slow spans", "{ duration > 30ms }"],
  ["Failed HTTP", "{ span.http.response.status_code >= 400 }"],
  ["Payments → provider", '{ resource.service.name = "payment-api" && kind = client }'],
];

const FIELDS = ["q", "service", "tags", "minDuration", "maxDuration", "limit"];

export function renderSearch(root) {
  document.title = "Search · Trace desk";
  const url = new URLSearchParams(location.search);
  const state = Object.fromEntries(FIELDS.map((f) => [f, url.get(f) || ""]));

  const q = h("textarea", {
    id: "q", name: "q", rows: 2, spellcheck: false,
    placeholder: '{ resource.service.name = "order-api" && status = error }',
  });
  q.value = state.q;
  q.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  const service = h("select", { id: "service", name: "service" }, h("option", { value: "" }, "All services"));
  const tags = h("input", { id: "tags", name: "tags", placeholder: "http.response.status_code=402", spellcheck: false, autocomplete: "off" });
  tags.value = state.tags;
  const minDuration = h("input", { id: "min-duration", name: "minDuration", placeholder: "e.g. 50ms", size: 8, autocomplete: "off" });
  minDuration.value = state.minDuration;
  const maxDuration = h("input", { id: "max-duration", name: "maxDuration", placeholder: "e.g. 2s", size: 8, autocomplete: "off" });
  maxDuration.value = state.maxDuration;
  const limit = h("select", { id: "limit", name: "limit" }, ["20", "50", "100", "500"].map((n) => h("option", { value: n }, n)));
  limit.value = state.limit || "20";

  const examples = h("div", { class: "examples" }, h("span", { class: "muted" }, "Examples:"),
    EXAMPLES.map(([label, text]) =>
      h("button", {
        type: "button", class: "chip", title: text, dataset: { q: text },
        onclick: () => { q.value = text; form.requestSubmit(); },
      }, h("code", null, text), h("span", { class: "sr-only" }, ` (${label})`))));

  const note = h("p", { class: "hint", id: "search-note" });
  const form = h("form", { id: "search-form", class: "search-form", "aria-label": "Search traces" },
    h("div", { class: "field traceql" },
      h("label", { for: "q" }, "TraceQL"),
      q,
      examples),
    h("div", { class: "filters" },
      field("Service", service),
      field("Tags (logfmt)", tags, "grow"),
      field("Min duration", minDuration),
      field("Max duration", maxDuration),
      field("Limit", limit),
      h("button", { type: "submit", class: "primary", id: "search-btn" }, "Search")),
    note);

  const errorBox = h("div", { id: "search-error", class: "error-box", role: "alert", hidden: true });
  const partialBox = h("div", { id: "partial-notice", class: "partial-box", role: "status", hidden: true });
  const heading = h("h2", { id: "results-heading" }, "Recent traces");
  const count = h("span", { id: "result-count", class: "muted", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("table", { id: "results", class: "results", "aria-labelledby": "results-heading" },
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Trace"),
      h("th", { scope: "col" }, "Services"),
      h("th", { scope: "col", class: "num" }, "Spans"),
      h("th", { scope: "col", class: "num" }, "Errors"),
      h("th", { scope: "col", class: "dur-col" }, "Duration"),
      h("th", { scope: "col" }, "Started"),
      h("th", { scope: "col" }, "Trace ID"))),
    tbody);

  mount(root,
    h("section", { class: "panel" }, h("h1", null, "Find traces"), form),
    errorBox,
    h("section", { class: "panel results-panel" }, h("div", { class: "results-head" }, heading, count), partialBox, table));

  let controller = null;
  let colors = new Map();

  const updateNote = () => {
    const traceql = q.value.trim().replace(/\s+/g, "");
    const filtered = service.value || tags.value.trim() || minDuration.value.trim() || maxDuration.value.trim();
    note.textContent = traceql && traceql !== "{}" && filtered
      ? "A TraceQL query takes precedence: the filters below it are not sent (Tempo ignores them with q)."
      : "Leave TraceQL empty (or {}) to search with the filters. Ctrl+Enter searches.";
  };
  for (const el of [q, service, tags, minDuration, maxDuration]) el.addEventListener("input", updateNote);
  updateNote();

  async function run() {
    if (controller) controller.abort();
    controller = new AbortController();
    const params = { q: q.value, service: service.value, tags: tags.value, minDuration: minDuration.value, maxDuration: maxDuration.value, limit: Number(limit.value) };
    const shown = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v && !(k === "limit" && v === 20)) shown.set(k, String(v));
    history.replaceState(null, "", shown.toString() ? `/?${shown}` : "/");
    updateNote();
    errorBox.hidden = true;
    partialBox.hidden = true;
    root.dataset.state = "loading";
    count.textContent = "searching…";
    try {
      const res = await api.search(params, controller.signal);
      showResults(res.traces || []);
      showPartial(res);
      root.dataset.state = "done";
    } catch (e) {
      if (e.name === "AbortError") return;
      mount(tbody);
      count.textContent = "";
      const traceql = params.q.trim() && params.q.replace(/\s+/g, "") !== "{}";
      mount(errorBox,
        h("strong", null, e.status ? `The server rejected the search (${e.status}):` : "Search failed:"),
        " ", h("span", { class: "error-message" }, e.message),
        traceql && e.status === 400
          ? h("p", { class: "hint" }, "This backend may not support this TraceQL yet. Clear the TraceQL box (or use {}) to search with the service, tags and duration filters.")
          : null);
      errorBox.hidden = false;
      root.dataset.state = "error";
    }
  }

  // Tempo (and the desk, past its time budget) may answer before inspecting everything:
  // `partial: true` with a `partialReason`, or fewer `completedJobs` than `totalJobs`.
  function showPartial(res) {
    const m = res.metrics || {};
    const done = Number(m.completedJobs), total = Number(m.totalJobs);
    const jobsShort = Number.isFinite(done) && Number.isFinite(total) && total > 0 && done < total;
    if (res.partial !== true && !jobsShort) return;
    mount(partialBox,
      h("strong", null, "Partial results: "),
      "the search stopped before inspecting everything",
      jobsShort ? ` (${done} of ${total} jobs done)` : "",
      ", so more traces may match.",
      res.partialReason ? h("span", { class: "partial-reason" }, " ", String(res.partialReason)) : null,
      h("p", { class: "hint" }, "Narrow the time range, the limit or the query for a complete answer."));
    partialBox.hidden = false;
  }

  function showResults(traces) {
    const max = Math.max(1, ...traces.map((t) => Number(t.durationMs || 0)));
    count.textContent = `${traces.length} trace${traces.length === 1 ? "" : "s"}`;
    const frag = document.createDocumentFragment();
    for (const t of traces) {
      const st = hitStats(t);
      const id = padTraceId(t.traceID || "");
      const href = `/trace/${id}`;
      const svc = t.rootServiceName || "";
      const dur = Number(t.durationMs || 0);
      frag.append(h("tr", { class: st.errors ? "has-error" : "", dataset: { traceId: id } },
        h("td", null,
          h("a", { href, class: "trace-link" },
            h("span", { class: "root-service", style: { "--svc": colors.get(svc) || "#64748b" } }, svc),
            " ",
            h("span", { class: "root-name" }, t.rootTraceName || "(root span not received)"))),
        h("td", { class: "services" }, st.services.map((s) =>
          h("span", { class: "svc-chip", style: { "--svc": colors.get(s) || "#64748b" }, title: `${t.serviceStats[s].spanCount} spans` }, s))),
        h("td", { class: "num span-count" }, String(st.spans)),
        h("td", { class: "num" }, st.errors
          ? h("span", { class: "err-mark", title: `${st.errors} span${st.errors === 1 ? "" : "s"} with status error`, "aria-label": `${st.errors} errors` }, "⚠ ", String(st.errors))
          : h("span", { class: "muted", "aria-label": "no errors" }, "–")),
        h("td", { class: "duration" },
          h("span", { class: "dur-bar", style: { width: `${Math.max(2, (dur / max) * 100)}%` } }),
          h("span", { class: "dur-text" }, dur ? formatDuration(dur * 1e6, true) : "< 1 ms")),
        h("td", { class: "started", title: formatTime(t.startTimeUnixNano) }, ago(t.startTimeUnixNano)),
        h("td", null, h("a", { href, class: "mono trace-id" }, id.slice(0, 16), "…"))));
    }
    mount(tbody, frag);
    if (!traces.length) {
      tbody.append(h("tr", null, h("td", { colspan: 7, class: "empty" }, "No traces match. Send a checkout, widen the filters, or clear the TraceQL box.")));
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  service.addEventListener("change", () => form.requestSubmit());

  api.serviceNames().then((names) => {
    colors = serviceColors(names);
    for (const n of names) service.append(h("option", { value: n }, n));
    if (state.service && !names.includes(state.service)) service.append(h("option", { value: state.service }, state.service));
    service.value = state.service;
    root.dataset.services = "loaded";
    run();
  }, () => {
    service.value = state.service;
    run();
  });
}

function field(label, control, cls) {
  return h("label", { class: `field ${cls || ""}` }, h("span", null, label), control);
}
