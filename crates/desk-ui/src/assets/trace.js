// The trace page: summary, service legend, and the waterfall (spans nested
// under their parents on one time axis) with a span detail panel.
//
// Rendering: every row is built once, into one DocumentFragment, by cloning a
// template row; rows are fixed-height with `content-visibility: auto`, so the
// browser lays out and paints only the rows on screen. Collapsing a subtree sets
// `hidden` on a contiguous range of rows (rows are in depth-first order, so a
// subtree is rows[i+1 .. subtreeEnd)). One delegated listener serves all rows.
import * as api from "./api.js";
import { h, mount } from "./dom.js";
import {
  buildTrace, formatDuration, formatTime, serviceColors, ticks, valueText,
} from "./model.js";

const INDENT_PX = 14;

export async function renderTrace(root, rawId) {
  document.title = "Trace · Trace desk";
  mount(root, h("p", { class: "loading" }, `Loading trace ${rawId}…`));
  let batches;
  try {
    batches = await api.trace(rawId);
  } catch (e) {
    mount(root, h("div", { class: "error-box", role: "alert", id: "trace-error" },
      h("strong", null, e.status === 404 ? "Trace not found." : `Could not load the trace (${e.status || "network"}):`),
      " ", h("span", { class: "error-message" }, e.message),
      h("p", null, h("a", { href: "/" }, "← Back to search"))));
    root.dataset.state = "error";
    return;
  }
  const t0 = performance.now();
  const model = buildTrace(batches);
  if (!model.rows.length) {
    mount(root, h("div", { class: "error-box", role: "alert", id: "trace-error" }, "The trace has no spans."));
    return;
  }
  new TraceView(root, model, rawId).render();
  const ms = performance.now() - t0;
  root.dataset.renderMs = ms.toFixed(1);
  root.dataset.state = "done";
  // For tests and the curious: the model behind the page.
  window.deskTrace = model;
}

class TraceView {
  constructor(root, model, rawId) {
    this.root = root;
    this.m = model;
    this.rawId = rawId;
    this.colors = serviceColors(model.services);
    this.rowEls = [];
    this.collapsed = new Uint8Array(model.rows.length);
    this.selected = -1;
  }

  render() {
    const m = this.m;
    const rootSpan = m.roots[0];
    document.title = `${rootSpan.service}: ${rootSpan.name} · Trace desk`;
    const counts = new Map();
    for (const s of m.spans) counts.set(s.service, (counts.get(s.service) || 0) + 1);
    const maxDepth = m.rows.reduce((d, s) => Math.max(d, s.depth), 0);

    const head = h("header", { class: "trace-head panel" },
      h("a", { href: "/", class: "back" }, "← Search"),
      h("h1", { id: "trace-title" },
        h("span", { class: "root-service", style: { "--svc": this.colors.get(rootSpan.service) } }, rootSpan.service),
        " ", h("span", { class: "root-name" }, rootSpan.name)),
      h("dl", { class: "facts" },
        fact("Trace ID", h("span", { class: "mono", id: "trace-id" }, m.traceId)),
        fact("Started", formatTime(m.start)),
        fact("Duration", h("span", { id: "trace-duration" }, formatDuration(m.durationNs))),
        fact("Spans", h("span", { id: "trace-span-count" }, String(m.spans.length))),
        fact("Services", String(m.services.length)),
        fact("Depth", String(maxDepth + 1)),
        fact("Errors", m.errors
          ? h("span", { class: "err-mark", id: "trace-errors" }, `⚠ ${m.errors}`)
          : h("span", { id: "trace-errors" }, "0"))));

    const legend = h("ul", { class: "legend", "aria-label": "Services" },
      m.services.map((s) => h("li", { dataset: { service: s } },
        h("span", { class: "swatch", style: { background: this.colors.get(s) } }), s,
        h("span", { class: "muted" }, ` ${counts.get(s)}`))),
      h("li", { class: "legend-critical", title: "From the root, always the child that ends last" },
        h("span", { class: "swatch critical-swatch" }), "critical path"),
      h("li", null, h("span", { class: "swatch error-swatch" }), "error"));

    this.findInput = h("input", { id: "span-find", type: "search", placeholder: "Find spans…", "aria-label": "Find spans by name, service or attribute", autocomplete: "off" });
    this.findCount = h("span", { class: "muted", id: "find-count", "aria-live": "polite" });
    this.findInput.addEventListener("input", () => this.find(this.findInput.value));
    const critical = h("input", { type: "checkbox", id: "show-critical", checked: true });
    critical.addEventListener("change", () => this.wf.classList.toggle("show-critical", critical.checked));

    const toolbar = h("div", { class: "toolbar" },
      h("button", { type: "button", id: "collapse-all", onclick: () => this.collapseAll() }, "Collapse all"),
      h("button", { type: "button", id: "expand-all", onclick: () => this.expandAll() }, "Expand all"),
      h("label", { class: "check" }, critical, " Highlight critical path"),
      this.findInput, this.findCount,
      legend);

    this.wf = this.waterfall();
    this.detail = h("aside", { class: "detail", id: "detail", "aria-label": "Span details", hidden: true, tabindex: "-1" });
    this.body = h("div", { class: "trace-body" }, this.wf, this.detail);
    mount(this.root, head, h("div", { class: "panel wf-panel" }, toolbar, this.body));

    const want = new URLSearchParams(location.hash.slice(1)).get("span");
    const target = want && m.rows.findIndex((s) => s.id === want.toLowerCase());
    if (target !== undefined && target !== null && target >= 0) {
      this.select(target, false);
      this.rowEls[target].scrollIntoView({ block: "nearest" });
    }
  }

  waterfall() {
    const m = this.m;
    const total = m.durationNs || 1;
    const tk = ticks(total, 6);
    const stepPct = (tk.step / total) * 100;
    const ruler = h("div", { class: "wf-ruler", "aria-hidden": "true" },
      tk.values.map((v) => h("span", { class: "tick", style: { left: `${(v / total) * 100}%` } },
        h("span", { class: "tick-label" }, v === 0 ? "0" : formatDuration(v, true)))));
    const resizer = h("div", {
      class: "resizer", role: "separator", tabindex: "0", "aria-orientation": "vertical",
      "aria-label": "Resize the span name column", "aria-valuemin": "15", "aria-valuemax": "70", "aria-valuenow": "38",
    });
    const header = h("div", { class: "wf-header" },
      h("div", { class: "wf-name-h" }, "Service & operation", resizer),
      ruler);

    // One template row, cloned per span.
    const tpl = h("div", { class: "row", role: "listitem" },
      h("div", { class: "name-cell" },
        h("button", { type: "button", class: "toggle" }),
        h("button", { type: "button", class: "span-btn" },
          h("span", { class: "svc" }), h("span", { class: "op" }))),
      h("div", { class: "track" },
        h("div", { class: "bar" }),
        h("span", { class: "bar-label" })));

    const frag = document.createDocumentFragment();
    const rowsEl = h("div", { class: "wf-rows", role: "list", "aria-label": "Spans" });
    for (const s of m.rows) {
      const el = tpl.cloneNode(true);
      const [nameCell, track] = el.children;
      const [toggle, btn] = nameCell.children;
      const [svc, op] = btn.children;
      const [bar, label] = track.children;
      const color = this.colors.get(s.service);
      el.dataset.index = s.index;
      el.dataset.spanId = s.id;
      el.dataset.parentId = s.parent ? s.parent.id : "";
      el.dataset.depth = s.depth;
      el.setAttribute("aria-level", s.depth + 1);
      if (s.error) el.classList.add("error");
      if (m.critical.has(s)) el.classList.add("critical");
      if (s.orphan) el.classList.add("orphan");
      nameCell.style.paddingLeft = `${s.depth * INDENT_PX + 4}px`;
      nameCell.style.setProperty("--indent", `${s.depth * INDENT_PX}px`);
      if (s.children.length) {
        toggle.setAttribute("aria-expanded", "true");
        toggle.setAttribute("aria-label", `Collapse ${s.name} (${s.subtreeEnd - s.index - 1} spans below)`);
      } else {
        toggle.classList.add("leaf");
        toggle.disabled = true;
        toggle.setAttribute("aria-hidden", "true");
        toggle.tabIndex = -1;
      }
      el.dataset.service = s.service;
      // The service is named where it changes; below that the colour says it.
      if (!s.parent || s.parent.service !== s.service) svc.textContent = s.service;
      svc.style.setProperty("--svc", color);
      op.textContent = s.name;
      btn.title = `${s.service}: ${s.name} (${s.kind}, ${formatDuration(s.durationNs)})${s.error ? " — error" : ""}${s.orphan ? " — parent span not in this trace" : ""}`;
      if (s.error) btn.append(errIcon());
      const left = (s.offsetNs / total) * 100;
      const width = (s.durationNs / total) * 100;
      bar.style.left = `${left}%`;
      bar.style.width = `${width}%`;
      bar.style.background = color;
      label.textContent = formatDuration(s.durationNs);
      // The label goes after the bar, else before it, else inside it.
      if (left + width <= 78) {
        label.style.left = `${left + width}%`;
      } else if (left >= 12) {
        label.classList.add("before");
        label.style.right = `${100 - left}%`;
      } else {
        label.classList.add("inside");
        label.style.right = `${100 - left - width}%`;
      }
      this.rowEls.push(el);
      frag.append(el);
    }
    rowsEl.append(frag);
    rowsEl.addEventListener("click", (e) => this.onClick(e));
    rowsEl.addEventListener("keydown", (e) => this.onKey(e));
    const wf = h("div", { class: "wf show-critical", id: "waterfall", style: { "--grid": `${stepPct}%` } }, header, rowsEl);
    wf.dataset.rendered = String(m.rows.length);
    const setWidth = (pct) => {
      const v = Math.min(70, Math.max(15, pct));
      wf.style.setProperty("--name-w", `${v}%`);
      resizer.setAttribute("aria-valuenow", v.toFixed(0));
    };
    resizer.addEventListener("pointerdown", (e) => {
      resizer.setPointerCapture(e.pointerId);
      const move = (ev) => {
        const r = wf.getBoundingClientRect();
        setWidth(((ev.clientX - r.left) / r.width) * 100);
      };
      const up = () => {
        resizer.removeEventListener("pointermove", move);
        resizer.removeEventListener("pointerup", up);
      };
      resizer.addEventListener("pointermove", move);
      resizer.addEventListener("pointerup", up);
      e.preventDefault();
    });
    resizer.addEventListener("keydown", (e) => {
      const now = Number(resizer.getAttribute("aria-valuenow"));
      if (e.key === "ArrowLeft") setWidth(now - 2);
      else if (e.key === "ArrowRight") setWidth(now + 2);
      else return;
      e.preventDefault();
    });
    return wf;
  }

  rowIndex(target) {
    const row = target.closest(".row");
    return row ? Number(row.dataset.index) : -1;
  }

  onClick(e) {
    const i = this.rowIndex(e.target);
    if (i < 0) return;
    if (e.target.closest(".toggle")) this.toggle(i);
    else this.select(i, true);
  }

  onKey(e) {
    const i = this.rowIndex(e.target);
    if (i < 0) return;
    const s = this.m.rows[i];
    const focus = (j) => {
      if (j >= 0 && j < this.rowEls.length) this.rowEls[j].querySelector(".span-btn").focus();
    };
    const step = (dir) => {
      let j = i + dir;
      while (j >= 0 && j < this.rowEls.length && this.rowEls[j].hidden) j += dir;
      return j;
    };
    switch (e.key) {
      case "ArrowDown": focus(step(1)); break;
      case "ArrowUp": focus(step(-1)); break;
      case "ArrowLeft":
        if (s.children.length && !this.collapsed[i]) this.toggle(i);
        else if (s.parent) focus(s.parent.index);
        break;
      case "ArrowRight":
        if (s.children.length && this.collapsed[i]) this.toggle(i);
        else if (s.children.length) focus(i + 1);
        break;
      case "Home": focus(0); break;
      case "End": focus(this.lastVisible()); break;
      case "Escape": this.closeDetail(); break;
      default: return;
    }
    e.preventDefault();
  }

  lastVisible() {
    for (let j = this.rowEls.length - 1; j >= 0; j--) if (!this.rowEls[j].hidden) return j;
    return 0;
  }

  setCollapsed(i, on) {
    const s = this.m.rows[i];
    if (!s.children.length) return;
    this.collapsed[i] = on ? 1 : 0;
    const el = this.rowEls[i];
    const toggle = el.querySelector(".toggle");
    const below = s.subtreeEnd - s.index - 1;
    toggle.setAttribute("aria-expanded", on ? "false" : "true");
    toggle.setAttribute("aria-label", `${on ? "Expand" : "Collapse"} ${s.name} (${below} spans below)`);
    el.classList.toggle("collapsed", on);
    el.querySelector(".span-btn").dataset.hiddenBelow = on ? String(below) : "";
  }

  /** Shows rows in [from, to) unless under a collapsed span. */
  refresh(from, to) {
    let i = from;
    while (i < to) {
      this.rowEls[i].hidden = false;
      if (this.collapsed[i]) {
        const end = this.m.rows[i].subtreeEnd;
        for (let j = i + 1; j < end; j++) this.rowEls[j].hidden = true;
        i = end;
      } else {
        i++;
      }
    }
  }

  toggle(i) {
    const s = this.m.rows[i];
    this.setCollapsed(i, !this.collapsed[i]);
    this.refresh(i, s.subtreeEnd);
  }

  collapseAll() {
    for (let i = 0; i < this.rowEls.length; i++) this.setCollapsed(i, true);
    this.refresh(0, this.rowEls.length);
  }

  expandAll() {
    for (let i = 0; i < this.rowEls.length; i++) this.setCollapsed(i, false);
    this.refresh(0, this.rowEls.length);
  }

  /** Expands every collapsed ancestor of row i. */
  reveal(i) {
    let p = this.m.rows[i].parent;
    let top = -1;
    while (p) {
      if (this.collapsed[p.index]) {
        this.setCollapsed(p.index, false);
        top = p.index;
      }
      p = p.parent;
    }
    if (top >= 0) this.refresh(top, this.m.rows[top].subtreeEnd);
  }

  find(text) {
    const needle = text.trim().toLowerCase();
    let n = 0;
    for (const s of this.m.rows) {
      const hit = Boolean(needle) && (
        s.name.toLowerCase().includes(needle) ||
        s.service.toLowerCase().includes(needle) ||
        s.id.includes(needle) ||
        s.attributes.some((a) => a.key.toLowerCase().includes(needle) || valueText(a).toLowerCase().includes(needle)));
      this.rowEls[s.index].classList.toggle("match", hit);
      if (hit) n++;
    }
    this.wf.classList.toggle("finding", Boolean(needle));
    this.findCount.textContent = needle ? `${n} match${n === 1 ? "" : "es"}` : "";
  }

  select(i, updateUrl) {
    if (this.selected >= 0) {
      this.rowEls[this.selected].classList.remove("selected");
      this.rowEls[this.selected].querySelector(".span-btn").removeAttribute("aria-current");
    }
    this.selected = i;
    this.reveal(i);
    const el = this.rowEls[i];
    el.classList.add("selected");
    el.querySelector(".span-btn").setAttribute("aria-current", "true");
    this.showDetail(this.m.rows[i]);
    if (updateUrl) history.replaceState(null, "", `${location.pathname}${location.search}#span=${this.m.rows[i].id}`);
  }

  closeDetail() {
    if (this.selected >= 0) {
      const el = this.rowEls[this.selected];
      el.classList.remove("selected");
      el.querySelector(".span-btn").removeAttribute("aria-current");
      el.querySelector(".span-btn").focus();
    }
    this.selected = -1;
    this.detail.hidden = true;
    this.body.classList.remove("with-detail");
    history.replaceState(null, "", `${location.pathname}${location.search}`);
  }

  showDetail(s) {
    const m = this.m;
    const color = this.colors.get(s.service);
    const jump = (span, text) => h("button", { type: "button", class: "linkish mono", onclick: () => { this.select(span.index, true); this.rowEls[span.index].scrollIntoView({ block: "nearest" }); } }, text);
    const status = h("span", { class: `status status-${s.status.code}`, id: "detail-status" },
      s.status.code.toUpperCase(), s.status.message ? `: ${s.status.message}` : "");
    mount(this.detail,
      h("div", { class: "detail-head", style: { "--svc": color } },
        h("h2", { id: "detail-name" }, s.error ? errIcon() : null, s.name),
        h("button", { type: "button", class: "close", "aria-label": "Close span details", onclick: () => this.closeDetail() }, "×")),
      h("p", { class: "detail-sub" },
        h("span", { class: "root-service", style: { "--svc": color } }, s.service), " · ",
        h("span", { class: "kind", id: "detail-kind" }, s.kind), " · ", status),
      h("dl", { class: "kv-grid" },
        fact("Duration", h("span", { id: "detail-duration" }, formatDuration(s.durationNs))),
        fact("Self time", formatDuration(s.selfNs)),
        fact("Start", `+${formatDuration(s.offsetNs)} (${formatTime(s.startNs)})`),
        fact("Span ID", h("span", { class: "mono", id: "detail-span-id" }, s.id)),
        fact("Parent", s.parent ? jump(s.parent, s.parent.id) : h("span", { class: "mono" }, s.parentId ? `${s.parentId} (not in trace)` : "— (root)")),
        fact("Trace ID", h("span", { class: "mono" }, s.traceId)),
        fact("Scope", `${s.scope.name || "—"}${s.scope.version ? ` ${s.scope.version}` : ""}`),
        s.traceState ? fact("Trace state", h("span", { class: "mono" }, s.traceState)) : null,
        m.critical.has(s) ? fact("Critical path", "yes: the root's end waited on this span") : null),
      section("detail-attributes", "Attributes", s.attributes.length, attrTable(s.attributes)),
      section("detail-events", "Events", s.events.length, s.events.length ? h("ol", { class: "events" },
        s.events.map((e) => h("li", { class: e.name === "exception" ? "event exception" : "event" },
          h("div", null, h("span", { class: "event-time mono" }, `+${formatDuration(Number(e.timeNs - s.startNs))}`), " ",
            h("strong", { class: "event-name" }, e.name)),
          e.attributes.length ? attrTable(e.attributes) : null))) : null),
      section("detail-links", "Links", s.links.length, s.links.length ? h("ul", { class: "links" },
        s.links.map((l) => {
          const local = l.traceId === m.traceId && m.rows.find((x) => x.id === l.spanId);
          return h("li", null,
            local ? jump(local, `span ${l.spanId}`) : h("a", { class: "mono", href: `/trace/${l.traceId}#span=${l.spanId}` }, `${l.traceId} / ${l.spanId}`),
            l.attributes.length ? attrTable(l.attributes) : null);
        })) : null),
      section("detail-resource", "Resource", s.resource.length, attrTable(s.resource)));
    this.detail.hidden = false;
    this.body.classList.add("with-detail");
    this.detail.scrollTop = 0;
  }
}

function fact(label, value) {
  return [h("dt", null, label), h("dd", null, value)];
}

function errIcon() {
  return h("span", { class: "err-icon", title: "status error", "aria-label": "error" }, "!");
}

function section(id, title, n, body) {
  return h("section", { id, class: "detail-section" },
    h("h3", null, title, h("span", { class: "muted" }, ` ${n}`)),
    n ? body : h("p", { class: "muted none" }, "none"));
}

function attrTable(list) {
  return h("table", { class: "attrs" }, h("tbody", null,
    list.map((a) => h("tr", { dataset: { key: a.key, type: a.type } },
      h("th", { scope: "row" }, a.key),
      h("td", { class: "type" }, a.type),
      h("td", { class: `value v-${a.type}` }, valueText(a))))));
}

