// Entry point: picks the page from the URL. `/` is the search page,
// `/trace/{id}` the trace page, `/services` the services overview; all are plain
// links, so every view is shareable.
import { renderSearch } from "./search.js";
import { renderTrace } from "./trace.js";
import { renderServices } from "./services.js";

const app = document.getElementById("app");

document.getElementById("jump").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = new FormData(e.target).get("id").toString().trim();
  if (id) location.assign(`/trace/${encodeURIComponent(id)}`);
});

const m = location.pathname.match(/^\/trace\/([^/]+)\/?$/);
if (m) {
  renderTrace(app, decodeURIComponent(m[1]));
} else if (/^\/services\/?$/.test(location.pathname)) {
  renderServices(app);
} else {
  renderSearch(app);
}
