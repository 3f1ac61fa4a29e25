// The polymodal web page: search a collection by text or image, browse hits, inspect items; and
// check an image for attacks (guard.js). Plain JavaScript modules, no build step. The API key (when the server asks for one) lives in
// localStorage and travels only in the X-API-Key header: images are fetched with it and shown
// through blob: URLs, so the key never appears in a URL.

import { setupGuard } from "./guard.js";
import { pickImages } from "./imagepick.js";

const KEY_STORE = "polymodal.apiKey";
const COLLECTION_STORE = "polymodal.collection";
const THUMB = 256;
const DETAIL_THUMB = 512;
const PARALLEL_THUMBS = 6;

const $ = (id) => document.getElementById(id);
const ui = {
  collection: $("collection"), collectionInfo: $("collection-info"), keyButton: $("key-button"),
  form: $("search"), q: $("q"), go: $("go"), drop: $("drop"), file: $("file"),
  queryImage: $("query-image"), queryPreview: $("query-preview"), queryName: $("query-name"),
  clearImage: $("clear-image"), status: $("status"), results: $("results"),
  details: $("details"), detailsTitle: $("details-title"), detailsClose: $("details-close"),
  detailsImage: $("details-image"), detailsText: $("details-text"), detailsFields: $("details-fields"),
  openFile: $("open-file"), keyDialog: $("key-dialog"), keyForm: $("key-form"), keyInput: $("key-input"),
  keyError: $("key-error"), keyCancel: $("key-cancel"), keyForget: $("key-forget"),
  fPath: $("f-path"), fType: $("f-type"), fSince: $("f-since"), fUntil: $("f-until"), fK: $("f-k"),
  fThreshold: $("f-threshold"), fImageWeight: $("f-image-weight"),
  tabSearch: $("tab-search"), tabGuard: $("tab-guard"), searchView: $("search-view"), guardView: $("guard-view"),
};

const state = {
  auth: false,
  queryFile: null, // the File searched by, if any
  queryUrl: null,
  blobUrls: [], // object URLs of the current results, revoked when they are replaced
  detailUrl: null,
  current: null, // the item shown in the details panel
  searchSeq: 0,
};

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey();
  if (key) headers.set("X-API-Key", key);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") message = body.detail;
      else if (Array.isArray(body.detail)) message = body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    } catch { /* not JSON */ }
    if (response.status === 401) openKeyDialog(apiKey() ? "The saved key was refused: " + message : message);
    throw new ApiError(response.status, message);
  }
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();
const enc = encodeURIComponent;
const itemPath = (id) => `/api/collections/${enc(ui.collection.value)}/items/${enc(id)}`;

// ---------------------------------------------------------------------------------------------
// Status line

function say(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

// ---------------------------------------------------------------------------------------------
// API key dialog

function openKeyDialog(message = "") {
  ui.keyError.textContent = message;
  ui.keyInput.value = apiKey();
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
  ui.keyInput.focus();
}

ui.keyButton.addEventListener("click", () => openKeyDialog());
ui.keyCancel.addEventListener("click", () => ui.keyDialog.close());
ui.keyForget.addEventListener("click", () => {
  localStorage.removeItem(KEY_STORE);
  ui.keyInput.value = "";
  ui.keyDialog.close();
  say("The API key was removed from this browser.");
});
ui.keyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = ui.keyInput.value.trim();
  if (!key) { ui.keyError.textContent = "Enter the key the server was started with."; return; }
  localStorage.setItem(KEY_STORE, key);
  ui.keyDialog.close();
  await loadCollections();
});

// ---------------------------------------------------------------------------------------------
// Collections

async function loadCollections() {
  let data;
  try {
    data = await apiJson("/api/collections");
  } catch (error) {
    say(error.message, true);
    return;
  }
  const wanted = ui.collection.value || localStorage.getItem(COLLECTION_STORE);
  ui.collection.replaceChildren();
  for (const c of data.collections) {
    const option = new Option(`${c.name} (${c.count} items)`, c.name);
    option.dataset.model = c.model;
    ui.collection.append(option);
  }
  if (!data.collections.length) {
    say("No collections yet. Index some files first: polymodal index PATH --collection NAME");
    return;
  }
  if (wanted && data.collections.some((c) => c.name === wanted)) ui.collection.value = wanted;
  showCollectionInfo();
  say(`${data.collections.length} collection(s). Type a query or drop an image.`);
}

function showCollectionInfo() {
  const option = ui.collection.selectedOptions[0];
  ui.collectionInfo.textContent = option ? `model ${option.dataset.model}` : "";
}

ui.collection.addEventListener("change", () => {
  localStorage.setItem(COLLECTION_STORE, ui.collection.value);
  showCollectionInfo();
  clearResults();
  if (ui.q.value.trim() || state.queryFile) search();
});

// ---------------------------------------------------------------------------------------------
// Image query: drop, pick, remove

function setQueryFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    say(`${file.name} is not an image (${file.type}).`, true);
    return;
  }
  if (state.queryUrl) URL.revokeObjectURL(state.queryUrl);
  state.queryFile = file;
  state.queryUrl = URL.createObjectURL(file);
  ui.queryPreview.src = state.queryUrl;
  ui.queryName.textContent = file.name || "pasted image";
  ui.queryImage.hidden = false;
  search();
}

function clearQueryFile() {
  if (state.queryUrl) URL.revokeObjectURL(state.queryUrl);
  state.queryFile = null;
  state.queryUrl = null;
  ui.queryImage.hidden = true;
  ui.queryPreview.removeAttribute("src");
  ui.file.value = "";
}

pickImages({ zone: ui.drop, input: ui.file, isActive: () => !ui.searchView.hidden, onFile: setQueryFile });
ui.clearImage.addEventListener("click", (event) => { event.stopPropagation(); clearQueryFile(); ui.q.focus(); });
// A file dropped anywhere else must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// ---------------------------------------------------------------------------------------------
// Search

function filterParams() {
  const out = [];
  if (ui.fPath.value.trim()) out.push(["path", ui.fPath.value.trim()]);
  if (ui.fType.value) out.push(["type", ui.fType.value]);
  if (ui.fSince.value) out.push(["since", ui.fSince.value]);
  if (ui.fUntil.value) out.push(["until", ui.fUntil.value]);
  out.push(["k", ui.fK.value || "24"]);
  if (ui.fThreshold.value !== "") out.push(["threshold", ui.fThreshold.value]);
  return out;
}

async function search() {
  const name = ui.collection.value;
  const text = ui.q.value.trim();
  if (!name) { say("Pick a collection first.", true); return; }
  if (!text && !state.queryFile) { say("Type a query or drop an image."); ui.q.focus(); return; }
  const seq = ++state.searchSeq;
  const base = `/api/collections/${enc(name)}/search`;
  ui.go.disabled = true;
  say("Searching…");
  try {
    let result;
    if (state.queryFile) {
      const form = new FormData();
      form.append("image", state.queryFile, state.queryFile.name || "query");
      if (text) {
        form.append("text", text);
        form.append("image_weight", ui.fImageWeight.value || "1");
      }
      for (const [k, v] of filterParams()) form.append(k, v);
      result = await apiJson(`${base}/image`, { method: "POST", body: form });
    } else {
      const params = new URLSearchParams([["q", text], ...filterParams()]);
      result = await apiJson(`${base}?${params}`);
    }
    if (seq !== state.searchSeq) return; // a newer search has started
    render(result);
  } catch (error) {
    if (seq === state.searchSeq) say(error.message, true);
  } finally {
    if (seq === state.searchSeq) ui.go.disabled = false;
  }
}

ui.form.addEventListener("submit", (event) => { event.preventDefault(); search(); });

// ---------------------------------------------------------------------------------------------
// Results

function clearResults() {
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
  ui.results.replaceChildren();
  closeDetails();
}

const baseName = (path) => path.split(/[\\/]/).pop() || path;

function render(result) {
  clearResults();
  const hits = result.hits;
  const what = [result.query.text && `“${result.query.text}”`, result.query.image && "the image"].filter(Boolean).join(" + ");
  say(hits.length
    ? `${hits.length} result(s) for ${what} in ${result.collection} (${Math.round(result.seconds * 1000)} ms${result.exact ? "" : ", approximate"}).`
    : `No results for ${what}${result.query.threshold != null ? ` at or above ${result.query.threshold}` : ""}.`);
  const jobs = [];
  hits.forEach((hit, n) => {
    const li = document.createElement("li");
    const card = document.createElement("button");
    card.type = "button";
    card.className = "card";
    card.dataset.id = hit.id;
    card.setAttribute("aria-pressed", "false");
    const name = baseName(hit.source) + (hit.uri.includes("#") ? "#" + hit.uri.split("#").slice(1).join("#") : "");
    card.setAttribute("aria-label", `${n + 1}. ${name}, score ${hit.score.toFixed(3)}: show details`);

    const box = document.createElement("div");
    box.className = "thumb-box";
    if (hit.kind === "image") {
      const img = document.createElement("img");
      img.className = "thumb";
      img.alt = "";
      img.width = 170;
      img.height = 170;
      box.append(img);
      jobs.push(() => loadImage(img, `${itemPath(hit.id)}/thumbnail?size=${THUMB}`));
    } else {
      const snippet = document.createElement("p");
      snippet.className = "snippet";
      snippet.textContent = (hit.text || "").slice(0, 280);
      box.append(snippet);
    }
    const caption = document.createElement("div");
    caption.className = "caption";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    label.title = hit.source;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    caption.append(label, score);
    card.append(box, caption);
    card.addEventListener("click", () => showDetails(hit.id, card));
    li.append(card);
    ui.results.append(li);
  });
  runLimited(jobs, PARALLEL_THUMBS);
}

async function loadImage(img, path) {
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    state.blobUrls.push(url);
    img.src = url;
  } catch (error) {
    img.alt = `thumbnail unavailable: ${error.message}`;
    img.title = error.message;
  }
}

async function runLimited(jobs, limit) {
  let next = 0;
  const worker = async () => { while (next < jobs.length) await jobs[next++](); };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

// ---------------------------------------------------------------------------------------------
// Details

function field(name, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  ui.detailsFields.append(dt, dd);
}

const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");
const bytes = (n) => (n == null ? "" : n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

async function showDetails(id, card) {
  for (const other of ui.results.querySelectorAll(".card")) other.setAttribute("aria-pressed", String(other === card));
  let item;
  try {
    item = await apiJson(itemPath(id));
  } catch (error) {
    say(error.message, true);
    return;
  }
  state.current = item;
  ui.detailsTitle.textContent = baseName(item.source);
  ui.detailsFields.replaceChildren();
  field("Source", item.source);
  if (item.uri !== item.source) field("Part", item.uri.slice(item.source.length));
  field("Kind", item.kind);
  field("Type", item.media_type);
  if (item.width && item.height) field("Size", `${item.width} × ${item.height} px`);
  field("File size", bytes(item.size));
  field("Modified", when(item.mtime));
  field("Indexed", when(item.indexed_at));
  field("Id", item.id);
  const meta = item.metadata && typeof item.metadata === "object" ? item.metadata : {};
  for (const [key, value] of Object.entries(meta)) field(key, typeof value === "string" ? value : JSON.stringify(value));
  const score = card?.querySelector(".score")?.textContent;
  if (score) field("Score", score);

  if (state.detailUrl) URL.revokeObjectURL(state.detailUrl);
  state.detailUrl = null;
  ui.detailsImage.hidden = item.kind !== "image";
  ui.detailsImage.removeAttribute("src");
  ui.detailsImage.alt = `${baseName(item.source)}`;
  ui.detailsText.hidden = item.kind !== "text";
  ui.detailsText.textContent = item.kind === "text" ? item.text || "" : "";
  ui.details.hidden = false;
  ui.details.focus();
  if (item.kind === "image") {
    try {
      const blob = await (await api(`${itemPath(id)}/thumbnail?size=${DETAIL_THUMB}`)).blob();
      if (state.current !== item) return;
      state.detailUrl = URL.createObjectURL(blob);
      ui.detailsImage.src = state.detailUrl;
    } catch (error) {
      ui.detailsImage.alt = `image unavailable: ${error.message}`;
    }
  }
}

function closeDetails() {
  ui.details.hidden = true;
  state.current = null;
  for (const card of ui.results.querySelectorAll(".card")) card.setAttribute("aria-pressed", "false");
}

ui.detailsClose.addEventListener("click", closeDetails);
ui.details.addEventListener("keydown", (event) => { if (event.key === "Escape") closeDetails(); });

ui.openFile.addEventListener("click", async () => {
  const item = state.current;
  if (!item) return;
  try {
    const blob = await (await api(`${itemPath(item.id)}/file`)).blob();
    // Only images open in a tab; anything else is saved, so no document of ours ever renders it.
    const safe = blob.type.startsWith("image/") && blob.type !== "image/svg+xml";
    const url = URL.createObjectURL(safe ? blob : new Blob([blob], { type: "application/octet-stream" }));
    const a = document.createElement("a");
    a.href = url;
    if (safe) { a.target = "_blank"; a.rel = "noopener"; } else { a.download = baseName(item.source); }
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    say(error.message, true);
  }
});

// ---------------------------------------------------------------------------------------------
// Views: search, and "check an image" (guard.js)

function showView(name) {
  const guard = name === "guard";
  ui.searchView.hidden = guard;
  ui.guardView.hidden = !guard;
  $("picker").style.visibility = guard ? "hidden" : ""; // collections play no part in a check
  for (const [tab, on] of [[ui.tabSearch, !guard], [ui.tabGuard, guard]]) {
    if (on) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  history.replaceState(null, "", guard ? "#check" : location.pathname + location.search);
}

ui.tabSearch.addEventListener("click", () => showView("search"));
ui.tabGuard.addEventListener("click", () => showView("guard"));
setupGuard(apiJson);
const viewOfAddress = () => showView(location.hash === "#check" ? "guard" : "search");
window.addEventListener("hashchange", viewOfAddress);
if (location.hash === "#check") viewOfAddress();

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  try {
    const health = await apiJson("/api/health");
    state.auth = health.auth;
    ui.keyButton.hidden = !health.auth;
    if (health.auth && !apiKey()) {
      openKeyDialog();
      say("This server needs an API key.");
      return;
    }
  } catch (error) {
    say(`The server does not answer: ${error.message}`, true);
    return;
  }
  await loadCollections();
}

start();
