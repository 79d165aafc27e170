// The trace model: decoding Tempo's jsonpb, the span tree, the critical path,
// and formatting. Pure functions, no DOM: the browser tests import this module.

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Hex of a span or trace id given as base64 (Tempo's jsonpb) or hex (OTLP/JSON). */
export function idToHex(id) {
  if (!id) return "";
  if (/^[0-9a-fA-F]+$/.test(id) && (id.length === 16 || id.length === 32)) return id.toLowerCase();
  const clean = id.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  let bits = 0;
  let acc = 0;
  let out = "";
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) return id;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += ((acc >> bits) & 0xff).toString(16).padStart(2, "0");
    }
  }
  return out;
}

/** Tempo trims leading zeros off trace ids in search results; pad them back. */
export function padTraceId(hex) {
  return hex.toLowerCase().padStart(32, "0");
}

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];
export function kindName(kind) {
  if (typeof kind === "number") return KINDS[kind] || "unspecified";
  if (!kind) return "unspecified";
  return String(kind).replace(/^SPAN_KIND_/, "").toLowerCase();
}

const CODES = ["unset", "ok", "error"];
export function statusCode(status) {
  const c = status && status.code;
  if (typeof c === "number") return CODES[c] || "unset";
  if (!c) return "unset";
  return String(c).replace(/^STATUS_CODE_/, "").toLowerCase();
}

/** `{type, value}` for an OTLP AnyValue in jsonpb or OTLP/JSON form. */
export function anyValue(v) {
  if (!v || typeof v !== "object") return { type: "empty", value: null };
  if ("stringValue" in v) return { type: "string", value: v.stringValue };
  if ("intValue" in v) return { type: "int", value: String(v.intValue) };
  if ("doubleValue" in v) return { type: "double", value: Number(v.doubleValue) };
  if ("boolValue" in v) return { type: "bool", value: Boolean(v.boolValue) };
  if ("bytesValue" in v) return { type: "bytes", value: v.bytesValue };
  if ("arrayValue" in v) return { type: "array", value: ((v.arrayValue && v.arrayValue.values) || []).map(anyValue) };
  if ("kvlistValue" in v) return { type: "kvlist", value: attributes((v.kvlistValue && v.kvlistValue.values) || []) };
  return { type: "empty", value: null };
}

/** Display text of a decoded value. */
export function valueText(t) {
  switch (t.type) {
    case "string":
      return t.value;
    case "array":
      return `[${t.value.map((x) => (x.type === "string" ? JSON.stringify(x.value) : valueText(x))).join(", ")}]`;
    case "kvlist":
      return `{${t.value.map((a) => `${a.key}: ${valueText(a)}`).join(", ")}}`;
    case "empty":
      return "";
    default:
      return String(t.value);
  }
}

export function attributes(list) {
  return (list || []).map((kv) => ({ key: kv.key, ...anyValue(kv.value) }));
}

function attr(list, key) {
  const a = list.find((x) => x.key === key);
  return a ? a.value : undefined;
}

function nanos(v) {
  try {
    return BigInt(v || 0);
  } catch {
    return 0n;
  }
}

/**
 * Builds the span tree of one trace from `batches` (ResourceSpans).
 * Returns `{traceId, spans, roots, rows, start, end, durationNs, services, critical, errors}`;
 * `rows` is the waterfall order: depth-first, children sorted by start time.
 */
export function buildTrace(batches) {
  const spans = [];
  for (const rs of batches || []) {
    const resource = attributes((rs.resource && rs.resource.attributes) || []);
    const service = attr(resource, "service.name") || "unknown_service";
    for (const ss of rs.scopeSpans || rs.instrumentationLibrarySpans || []) {
      const sc = ss.scope || ss.instrumentationLibrary || {};
      const scope = { name: sc.name || "", version: sc.version || "" };
      for (const s of ss.spans || []) {
        const startNs = nanos(s.startTimeUnixNano);
        let endNs = nanos(s.endTimeUnixNano);
        if (endNs < startNs) endNs = startNs;
        spans.push({
          id: idToHex(s.spanId),
          parentId: idToHex(s.parentSpanId),
          traceId: idToHex(s.traceId),
          name: s.name || "",
          kind: kindName(s.kind),
          service,
          resource,
          scope,
          attributes: attributes(s.attributes),
          events: (s.events || []).map((e) => ({
            name: e.name || "",
            timeNs: nanos(e.timeUnixNano),
            attributes: attributes(e.attributes),
          })),
          links: (s.links || []).map((l) => ({
            traceId: idToHex(l.traceId),
            spanId: idToHex(l.spanId),
            traceState: l.traceState || "",
            attributes: attributes(l.attributes),
          })),
          status: { code: statusCode(s.status), message: (s.status && s.status.message) || "" },
          traceState: s.traceState || "",
          startNs,
          endNs,
          children: [],
          parent: null,
          orphan: false,
        });
      }
    }
  }
  if (!spans.length) {
    return { traceId: "", spans, roots: [], rows: [], start: 0n, end: 0n, durationNs: 0, services: [], critical: new Set(), errors: 0 };
  }
  let start = spans[0].startNs;
  let end = spans[0].endNs;
  const byId = new Map();
  for (const s of spans) {
    if (s.startNs < start) start = s.startNs;
    if (s.endNs > end) end = s.endNs;
    if (!byId.has(s.id)) byId.set(s.id, s);
  }
  const byStart = (a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : a.endNs < b.endNs ? 1 : a.endNs > b.endNs ? -1 : 0);
  const roots = [];
  for (const s of spans) {
    s.offsetNs = Number(s.startNs - start);
    s.durationNs = Number(s.endNs - s.startNs);
    s.error = s.status.code === "error";
    const p = s.parentId ? byId.get(s.parentId) : undefined;
    if (p && p !== s) {
      s.parent = p;
      p.children.push(s);
    } else {
      s.orphan = Boolean(s.parentId);
      roots.push(s);
    }
  }
  roots.sort(byStart);
  for (const s of spans) s.children.sort(byStart);

  // Depth-first order without recursion (deep traces stay safe); a parent cycle
  // (bad data) cannot loop because each span is visited once.
  const rows = [];
  const seen = new Set();
  const stack = roots.slice().reverse().map((s) => [s, 0]);
  while (stack.length) {
    const [s, depth] = stack.pop();
    if (seen.has(s)) continue;
    seen.add(s);
    s.depth = depth;
    s.index = rows.length;
    rows.push(s);
    for (let i = s.children.length - 1; i >= 0; i--) stack.push([s.children[i], depth + 1]);
  }
  for (const s of spans) {
    if (!seen.has(s)) {
      // In a parent cycle: show it as a root rather than lose it.
      s.depth = 0;
      s.index = rows.length;
      s.children = [];
      rows.push(s);
    }
  }
  // Subtree extents: rows[s.index + 1 .. s.subtreeEnd) are s's descendants.
  for (let i = rows.length - 1; i >= 0; i--) {
    const s = rows[i];
    let e = i + 1;
    for (const c of s.children) if (c.index >= e) e = Math.max(e, c.subtreeEnd);
    s.subtreeEnd = e;
  }
  for (const s of spans) s.selfNs = selfTime(s);

  const services = [...new Set(spans.map((s) => s.service))].sort();
  return {
    traceId: spans[0].traceId,
    spans,
    roots,
    rows,
    start,
    end,
    durationNs: Number(end - start),
    services,
    critical: criticalPath(roots),
    errors: spans.filter((s) => s.error).length,
  };
}

/** Time a span spent with none of its children running, clipped to the span. */
export function selfTime(s) {
  let covered = 0n;
  let curStart = null;
  let curEnd = null;
  for (const c of s.children) {
    const a = c.startNs > s.startNs ? c.startNs : s.startNs;
    const b = c.endNs < s.endNs ? c.endNs : s.endNs;
    if (b <= a) continue;
    if (curEnd === null || a > curEnd) {
      if (curEnd !== null) covered += curEnd - curStart;
      curStart = a;
      curEnd = b;
    } else if (b > curEnd) {
      curEnd = b;
    }
  }
  if (curEnd !== null) covered += curEnd - curStart;
  return Number(s.endNs - s.startNs - covered);
}

/**
 * The critical path, as this UI defines it (the walk Jaeger's trace view uses):
 * start at the trace's root (the earliest root) with a cursor at its end. Among
 * its children that started before the cursor, take the one that ends last
 * (its end clipped to the cursor) — the child the parent was waiting on — mark
 * it, walk into it the same way, then move the cursor back to that child's start
 * and repeat, until no child started before the cursor. The first pick at each
 * level is simply "the child that ends last"; walking back from its start adds
 * the earlier sequential children the parent also waited on (the SQL calls
 * before the payment call, say), while children that ran in parallel under a
 * longer sibling stay off the path. Returns a Set of spans.
 */
export function criticalPath(roots) {
  const path = new Set();
  if (!roots.length) return path;
  // Explicit stack instead of recursion: [span, cursor] frames.
  const stack = [[roots[0], roots[0].endNs]];
  while (stack.length) {
    const frame = stack[stack.length - 1];
    const [s, cursor] = frame;
    path.add(s);
    let next = null;
    let nextEnd = 0n;
    for (const c of s.children) {
      if (path.has(c) || c.startNs >= cursor) continue;
      const end = c.endNs < cursor ? c.endNs : cursor;
      if (!next || end > nextEnd || (end === nextEnd && c.startNs > next.startNs)) {
        next = c;
        nextEnd = end;
      }
    }
    if (!next) {
      stack.pop();
      continue;
    }
    frame[1] = next.startNs > s.startNs ? next.startNs : s.startNs;
    if (frame[1] <= s.startNs) stack.pop();
    stack.push([next, nextEnd]);
  }
  return path;
}

/** "850 ns", "12.3 µs", "45.2 ms", "1.25 s": three significant digits. */
export function formatDuration(ns, trim = false) {
  const n = Number(ns);
  if (!isFinite(n)) return "";
  const abs = Math.abs(n);
  const fmt = (v, unit) => {
    let t = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    if (trim && t.includes(".")) t = t.replace(/\.?0+$/, "");
    return `${t} ${unit}`;
  };
  if (abs < 1e3) return `${n.toFixed(0)} ns`;
  if (abs < 1e6) return fmt(n / 1e3, "µs");
  if (abs < 1e9) return fmt(n / 1e6, "ms");
  if (abs < 60e9) return fmt(n / 1e9, "s");
  const m = Math.floor(n / 60e9);
  return `${m} m ${((n - m * 60e9) / 1e9).toFixed(0)} s`;
}

/** Ticks at a 1/2/5 step with at most about `count` intervals over [0, total]. */
export function ticks(totalNs, count = 5) {
  if (!(totalNs > 0)) return { step: 1, values: [0] };
  const raw = totalNs / count;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) || 10 * pow;
  const values = [];
  for (let v = 0; v <= totalNs * (1 + 1e-9); v += step) values.push(v);
  return { step, values };
}

/** Local date and time of a unix-nanosecond timestamp (string or BigInt). */
export function formatTime(ns) {
  const ms = Number(BigInt(ns || 0) / 1000000n);
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function ago(ns, nowMs = Date.now()) {
  const s = Math.round((nowMs - Number(BigInt(ns || 0) / 1000000n)) / 1000);
  if (s < 0) return "in the future";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// Twelve colours that stay apart on white; a service keeps its colour across
// traces (hash of its name), moving to the next free slot on a clash.
export const PALETTE = [
  "#3b82f6", "#f59e0b", "#10b981", "#8b5cf6", "#ec4899", "#06b6d4",
  "#84cc16", "#f97316", "#6366f1", "#14b8a6", "#a855f7", "#eab308",
];

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function serviceColors(services) {
  const taken = new Set();
  const colors = new Map();
  for (const name of services) {
    let slot = hash(name) % PALETTE.length;
    for (let i = 0; i < PALETTE.length && taken.has(slot); i++) slot = (slot + 1) % PALETTE.length;
    taken.add(slot);
    if (taken.size >= PALETTE.length) taken.clear();
    colors.set(name, PALETTE[slot]);
  }
  return colors;
}

/** Totals of a search hit's `serviceStats`. */
export function hitStats(hit) {
  let spans = 0;
  let errors = 0;
  for (const st of Object.values(hit.serviceStats || {})) {
    spans += Number(st.spanCount || 0);
    errors += Number(st.errorCount || 0);
  }
  return { spans, errors, services: Object.keys(hit.serviceStats || {}).sort() };
}
