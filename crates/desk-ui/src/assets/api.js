// Talks to the Tempo HTTP API only (the desk's or a real Tempo's behind a proxy).

/** An answer that was not 2xx; `message` is the server's own text. */
export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

async function getJson(url, signal) {
  let res;
  try {
    res = await fetch(url, { headers: { Accept: "application/json" }, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach the API: ${e.message}`, url);
  }
  const text = await res.text();
  if (!res.ok) {
    throw new ApiError(res.status, text.trim() || res.statusText, url);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(res.status, `the API answered with invalid JSON: ${e.message}`, url);
  }
}

/** Quotes a logfmt value when it needs it. */
export function logfmtValue(v) {
  return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
}

/**
 * Builds the `/api/search` query. A TraceQL query other than `{}` is sent as `q`
 * (Tempo then ignores the legacy filters); otherwise the service, tags and
 * durations go out as the legacy `tags`, `minDuration`, `maxDuration`.
 */
export function searchQuery({ q = "", service = "", tags = "", minDuration = "", maxDuration = "", limit = 20 }) {
  const p = new URLSearchParams();
  const traceql = q.trim();
  if (traceql && traceql.replace(/\s+/g, "") !== "{}") {
    p.set("q", traceql);
  } else {
    const parts = [];
    if (service) parts.push(`service.name=${logfmtValue(service)}`);
    if (tags.trim()) parts.push(tags.trim());
    if (parts.length) p.set("tags", parts.join(" "));
    if (minDuration.trim()) p.set("minDuration", minDuration.trim());
    if (maxDuration.trim()) p.set("maxDuration", maxDuration.trim());
  }
  p.set("limit", String(limit || 20));
  return p;
}

export function search(params, signal) {
  return getJson(`/api/search?${searchQuery(params)}`, signal);
}

export async function serviceNames(signal) {
  const v = await getJson("/api/search/tag/service.name/values", signal);
  return (v.tagValues || []).map((x) => (typeof x === "string" ? x : x.value)).sort();
}

/** `/api/traces/{id}` (v1): `{batches:[ResourceSpans]}`; v2's shape is accepted too. */
export async function trace(id, signal) {
  const v = await getJson(`/api/traces/${encodeURIComponent(id)}`, signal);
  return v.batches || v.resourceSpans || (v.trace && v.trace.resourceSpans) || [];
}

/**
 * TraceQL metrics over a range: `/api/metrics/query_range` (Tempo's
 * `QueryRangeResponse`: `series[]` with `labels`, `samples`, `exemplars`).
 * `start`/`end` are unix seconds, `step` a Go duration such as `15s`.
 */
export function metricsRange({ q, start, end, step, exemplars = 100 }, signal) {
  const p = new URLSearchParams({ q, start: String(start), end: String(end), step, exemplars: String(exemplars) });
  return getJson(`/api/metrics/query_range?${p}`, signal);
}

/** One value per series over (start, end]: `/api/metrics/query`. */
export function metricsInstant({ q, start, end }, signal) {
  const p = new URLSearchParams({ q, start: String(start), end: String(end) });
  return getJson(`/api/metrics/query?${p}`, signal);
}
