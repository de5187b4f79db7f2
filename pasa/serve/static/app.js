// The page of `pasa serve`: submit a search, follow its progress (Server-Sent Events), show the ranked papers and
// the citation tree, export. Plain DOM, no framework; every text from the server goes through textContent.
"use strict";

const KEY_STORAGE = "pasa-api-key";
const STAGE_LABELS = {
  queries: "queries", search: "search calls", ids: "ids", lookup: "lookups", found: "found",
  sections: "sections fetched", crawler: "papers read by the crawler", chosen: "sections chosen",
  scored: "scored", selected: "selected", failed: "failed calls",
};
const $ = (id) => document.getElementById(id);

let current = null;      // id of the search shown
let stream = null;       // AbortController of its event stream
let pendingSubmit = null; // a submission to repeat once an API key is given

// -- API ----------------------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

function needKey(submission) {
  if (submission) pendingSubmit = submission;
  $("key-form").hidden = false;
  $("api-key").focus();
}

// Server-Sent Events through fetch (EventSource cannot send the Authorization header).
async function followEvents(id, onEvent) {
  if (stream) stream.abort();
  stream = new AbortController();
  const response = await api(`/api/search/${encodeURIComponent(id)}/events`, { signal: stream.signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

// -- rendering ------------------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function arxivUrl(id) { return "https://arxiv.org/abs/" + encodeURIComponent(id).replace(/%2F/g, "/"); }

function showMessage(text, kind) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = "note" + (kind ? " " + kind : "");
}

function renderProgress(progress) {
  const body = $("progress").querySelector("tbody");
  body.replaceChildren();
  const stages = Object.entries(progress || {});
  $("progress").hidden = stages.length === 0;
  for (const [stage, counts] of stages) {
    const text = Object.entries(counts)
      .filter(([key, n]) => n || key !== "failed")
      .map(([key, n]) => `${n} ${STAGE_LABELS[key] || key}`)
      .join(", ");
    body.append(el("tr", {}, el("td", { text: stage }), el("td", { text })));
  }
}

function renderStatus(search) {
  const status = $("status");
  status.textContent = search.status;
  status.className = "status " + search.status;
  $("elapsed").textContent = search.elapsed_s != null ? `${search.elapsed_s.toFixed(1)} s` : "";
  renderProgress(search.progress);
}

function renderPapers(papers) {
  const list = $("papers");
  list.replaceChildren();
  for (const p of papers) {
    const title = p.arxiv_id
      ? el("a", { class: "title", href: arxivUrl(p.arxiv_id), target: "_blank", rel: "noopener", text: p.title })
      : el("span", { class: "title", text: p.title });
    const body = el("div", {}, title);
    if (p.selected) body.append(el("span", { class: "mark", title: "selected by the Selector", text: "✓ selected" }));
    let how = (p.depth === 0 ? "search: " : "cited in ") + p.found_by;
    if (p.found_by === "[Seed]") how = "seed paper";
    body.append(el("div", { class: "found", text: (p.arxiv_id ? "arXiv " + p.arxiv_id + " · " : "") + how }));
    if (p.abstract) {
      body.append(el("details", {}, el("summary", { text: "abstract" }), el("p", { class: "abstract", text: p.abstract })));
    }
    list.append(el("li", { class: "paper" + (p.selected ? " selected" : "") },
      el("div", { class: "score", text: p.score.toFixed(3) }), body));
  }
}

function treeList(node, isRoot) {
  const list = el("ul");
  for (const [key, children] of Object.entries(node.child || {})) {
    const label = (isRoot && key !== "[Seed]" ? "search: " : "") + key + (children.length ? "" : " (no new paper)");
    const group = el("li", {}, el("span", { class: "key", text: label }));
    const inner = el("ul");
    for (const c of children) {
      const item = el("li", { class: c.select_score > 0.5 ? "selected" : "" },
        el("span", { class: "node-score", text: Number(c.select_score || 0).toFixed(3) }),
        c.arxiv_id ? el("a", { href: arxivUrl(c.arxiv_id), target: "_blank", rel: "noopener", text: c.title })
          : el("span", { text: c.title }));
      if (c.child && Object.keys(c.child).length) item.append(treeList(c, false));
      inner.append(item);
    }
    group.append(inner);
    list.append(group);
  }
  return list;
}

async function renderTree(id) {
  const tree = await (await api(`/api/search/${encodeURIComponent(id)}/export?format=json`)).json();
  $("tree").replaceChildren(treeList(tree, true));
}

function renderFinished(search) {
  renderStatus(search);
  const papers = search.papers || [];
  const failures = failureText(search.failures);
  const anySelected = papers.some((p) => p.selected);
  if (search.status === "failed") {
    showMessage("This search failed: " + (search.error || "no reason given") + ".", "error");
  } else if (papers.length === 0) {
    showMessage("The search finished but found no paper" +
      (search.degraded ? ", and some of its tool calls failed (" + failures + ")." : "."), "error");
  } else if (search.degraded) {
    showMessage("Degraded result: some tool calls failed (" + failures + "), so papers may be missing" +
      (anySelected ? "." : ", and no paper was selected."), anySelected ? "" : "error");
  } else if (!anySelected) {
    showMessage("No paper reached the selection threshold (score > 0.5); below is every paper found, best first.", "");
  } else {
    showMessage("");
  }
  if (search.status === "failed" || search.degraded) $("message").append(" ", againButton(search));
  const done = search.status === "done";
  $("exports").hidden = !done;
  $("tabs").hidden = !done || papers.length === 0;
  renderPapers(papers);
  if (done && papers.length) renderTree(search.id).catch(() => {});
}

function failureText(failures) {
  const parts = Object.entries(failures || {}).filter(([, n]) => n).map(([k, n]) => `${k}: ${n}`);
  return parts.length ? parts.join(", ") : "unknown";
}

// -- flow ---------------------------------------------------------------------------------------------------------------
async function show(id, push) {
  current = id;
  if (push) history.pushState({ id }, "", "/?id=" + encodeURIComponent(id));
  $("result").hidden = false;
  $("papers").replaceChildren();
  $("tree").replaceChildren();
  $("exports").hidden = true;
  $("tabs").hidden = true;
  showMessage("");
  let search;
  try {
    search = await (await api(`/api/search/${encodeURIComponent(id)}`)).json();
  } catch (err) {
    if (err.status === 401) return needKey();
    $("result-query").textContent = "";
    $("result-meta").textContent = "";
    $("status").textContent = "";
    return showMessage(err.status === 404 ? `No search with id ${id} on this server.` : err.message, "error");
  }
  $("result-query").textContent = search.query;
  const meta = [];
  if (search.end_date) meta.push("published before " + search.end_date);
  if (search.seed_papers && search.seed_papers.length) meta.push("seed papers: " + search.seed_papers.join(", "));
  $("result-meta").textContent = meta.join(" · ");
  $("share").replaceChildren(el("a", { href: "/?id=" + encodeURIComponent(id), text: "link to this search" }));
  if (search.status === "done" || search.status === "failed") return renderFinished(search);
  renderStatus(search);
  try {
    await followEvents(id, (event, data) => {
      if (current !== id) return;
      if (event === "progress") renderStatus(data);
    });
  } catch (err) {
    if (err.name === "AbortError") return;
  }
  if (current === id) {
    const finished = await (await api(`/api/search/${encodeURIComponent(id)}`)).json();
    renderFinished(finished);
    loadRecent();
  }
}

async function submit(event) {
  event.preventDefault();
  const body = { query: $("query").value };
  if ($("end_date").value.trim()) body.end_date = $("end_date").value.trim();
  const seeds = $("seed_papers").value.split(/[\s,]+/).filter(Boolean);
  if (seeds.length) body.seed_papers = seeds;
  $("submit").disabled = true;
  try {
    await submitSearch(body);
  } finally {
    $("submit").disabled = false;
  }
}

async function submitSearch(body) {
  $("form-error").textContent = "";
  try {
    const created = await (await api("/api/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    loadRecent();
    show(created.id, true);
  } catch (err) {
    if (err.status === 401) needKey(() => submitSearch(body));
    else $("form-error").textContent = err.message;
  }
}

// A button that runs the same search once more (a failed or degraded search: the services may be back).
function againButton(search) {
  const body = { query: search.query };
  if (search.end_date) body.end_date = search.end_date;
  if (search.seed_papers && search.seed_papers.length) body.seed_papers = search.seed_papers;
  const button = el("button", { type: "button", class: "again", text: "Search again" });
  button.addEventListener("click", () => submitSearch(body));
  return button;
}

async function loadRecent() {
  let data;
  try {
    data = await (await api("/api/searches?limit=20")).json();
  } catch (err) {
    if (err.status === 401) needKey();
    return;
  }
  const list = $("recent");
  list.replaceChildren();
  for (const s of data.searches) {
    const link = el("a", { href: "/?id=" + encodeURIComponent(s.id), text: s.query });
    link.addEventListener("click", (e) => { e.preventDefault(); show(s.id, true); });
    let meta = s.status;
    if (s.status === "done") meta += ` · ${s.counts.selected} selected of ${s.counts.papers}`;
    if (s.degraded) meta += " · degraded";
    list.append(el("li", {}, link, el("span", { class: "meta", text: meta })));
  }
  if (!data.searches.length) list.append(el("li", { class: "meta", text: "none yet" }));
}

async function loadHealth() {
  try {
    const health = await (await api("/api/health")).json();
    $("demo-note").hidden = !health.demo;
    if (health.crawler) $("model-info").textContent = `crawler: ${health.crawler} · selector: ${health.selector}`;
  } catch (err) {
    if (err.status === 401) needKey();
  }
}

function start() {
  $("search-form").addEventListener("submit", submit);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("api-key").value);
    $("key-form").hidden = true;
    const submission = pendingSubmit;
    pendingSubmit = null;
    loadHealth();
    loadRecent();
    if (submission) submission();
    else if (current) show(current, false);
  });
  for (const button of $("exports").querySelectorAll("button")) {
    button.addEventListener("click", async () => {
      const format = button.dataset.format;
      const response = await api(`/api/search/${encodeURIComponent(current)}/export?format=${format}`);
      const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `pasa-${current}.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
    });
  }
  for (const button of $("tabs").querySelectorAll("button")) {
    button.addEventListener("click", () => {
      for (const b of $("tabs").querySelectorAll("button")) b.classList.toggle("active", b === button);
      $("papers").hidden = button.dataset.tab !== "papers";
      $("tree").hidden = button.dataset.tab !== "tree";
    });
  }
  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(location.search).get("id");
    if (id) show(id, false);
  });
  loadHealth();
  loadRecent();
  const id = new URLSearchParams(location.search).get("id");
  if (id) show(id, false);
}

document.addEventListener("DOMContentLoaded", start);
