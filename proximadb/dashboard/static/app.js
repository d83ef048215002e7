// ProximaDB dashboard: plain JavaScript, no libraries, nothing loaded from elsewhere (metrics.js: the
// /metrics parser and the canvas charts).
//
// Every data call goes to this daemon's own REST API with the API key the user typed
// (kept in sessionStorage, sent as "Authorization: Bearer <key>"). Pages (by URL hash):
// #collections (list + stats), #records (scroll pages), #search (vector or record id, filter, k, ef),
// #metrics (rates and search latency percentiles from /metrics, drawn on <canvas> by hand).
// "?interval=<seconds>" in the URL sets the metrics polling period (default 2).
"use strict";

(() => {
  const KEY_STORAGE = "proximadb.apiKey";
  const HISTORY = 90; // metric samples kept per chart
  const MIN_SLOTS = 20; // the x axis never spans fewer samples than this
  const params = new URLSearchParams(location.search);
  const POLL_SECONDS = Math.min(60, Math.max(0.2, Number(params.get("interval")) || 2));

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const state = {
    collections: [],
    cursors: [null], // cursors[n] opens page n of the record browser
    page: 0,
    nextCursor: null,
    recordsTicket: 0,
    searchTicket: 0,
    samples: [], // {t, ingest, queries, p50, p95, p99}
    prev: null, // the previous raw scrape
    metricsTimer: null,
    searchOnShow: false, // the record browser's "Similar": run the search once the page shows
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ------------------------------------------------------------------ API calls and the key

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "unreachable", "the daemon does not answer (" + err.message + ")");
    }
    const text = await resp.text();
    if (!resp.ok) {
      let code = "http_" + resp.status;
      let message = text.slice(0, 300);
      try {
        const parsed = JSON.parse(text);
        if (parsed && parsed.error) {
          code = parsed.error.code;
          message = parsed.error.message;
        }
      } catch (_) { /* not JSON: keep the text */ }
      if (resp.status === 401) showKeyProblem(key);
      throw new ApiError(resp.status, code, message);
    }
    if (banner.dataset.kind === "auth") hideBanner();
    if (path === "/metrics") return text;
    return JSON.parse(text).data;
  }

  const banner = $("banner");

  function showBanner(text, kind) {
    banner.textContent = text;
    banner.dataset.kind = kind;
    banner.className = kind === "info" ? "banner info" : "banner";
    banner.hidden = false;
  }

  function hideBanner() {
    banner.hidden = true;
    banner.dataset.kind = "";
  }

  function showKeyProblem(key) {
    if (key) {
      showBanner("API key rejected: the daemon does not know this key. Type another one above.", "auth");
    } else {
      showBanner("API key required: this daemon has API keys enabled. Type one above.", "auth");
    }
  }

  function errorText(err) {
    return err instanceof ApiError ? err.code + ": " + err.message : String(err.message || err);
  }

  // ------------------------------------------------------------------ small DOM helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "class") node.className = value;
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(child === null || child === undefined ? "" : String(child)));
    }
    return node;
  }

  function num(value) {
    return typeof value === "number" ? value.toLocaleString("en-US") : "–";
  }

  function bytes(value) {
    if (typeof value !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = value;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  function when(unixSeconds) {
    if (typeof unixSeconds !== "number") return "never";
    return new Date(unixSeconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function json(value) {
    return JSON.stringify(value === undefined ? null : value);
  }

  // ------------------------------------------------------------------ pages

  const PAGES = ["collections", "records", "search", "metrics"];

  function currentPage() {
    const name = location.hash.replace(/^#/, "");
    return PAGES.includes(name) ? name : "collections";
  }

  function showPage() {
    const name = currentPage();
    for (const page of PAGES) $("page-" + page).hidden = page !== name;
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.page === name);
    }
    document.body.dataset.page = name;
    if (name === "collections") loadCollections();
    if (name === "records") loadCollections().then(() => loadRecords());
    if (name === "search") {
      loadCollections().then(() => {
        if (state.searchOnShow) {
          state.searchOnShow = false;
          $("search-form").requestSubmit();
        }
      });
    }
    if (name === "metrics") drawCharts();
  }

  // ------------------------------------------------------------------ collections

  let collectionsLoading = null;

  function loadCollections() {
    if (!collectionsLoading) {
      collectionsLoading = fetchCollections().finally(() => { collectionsLoading = null; });
    }
    return collectionsLoading;
  }

  async function fetchCollections() {
    const body = $("collections-table").tBodies[0];
    let list;
    try {
      list = await api("GET", "/collections");
    } catch (err) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: "12", class: "error" }, errorText(err))));
      $("collections-table").dataset.state = "error";
      return;
    }
    const stats = await Promise.all(list.map((c) => api("GET", "/collections/" + enc(c.name) + "/stats")
      .catch((err) => ({ error: errorText(err) }))));
    state.collections = list;
    body.replaceChildren(...list.map((c, i) => collectionRow(c, stats[i])));
    $("collections-empty").hidden = list.length > 0;
    $("collections-table").dataset.state = "loaded";
    fillCollectionSelects();
  }

  function collectionRow(c, s) {
    const status = s.error ? el("span", { class: "error" }, s.error)
      : el("span", { class: "status-" + s.status }, s.status === "green" ? "green (fully indexed)" : s.status + " (not fully indexed)");
    const cell = (text, cls) => el("td", cls ? { class: cls } : {}, text);
    return el("tr", { "data-collection": c.name },
      el("td", {}, el("a", { href: "#records", on: { click: () => selectCollection(c.name) } }, c.name)),
      cell(num(s.vectors !== undefined ? s.vectors : c.vector_count), "num"),
      cell(num(c.dimension), "num"),
      cell(c.distance_metric),
      cell(c.indexing_algorithm + (s.index_builds_pending ? " (" + s.index_builds_pending + " building)" : "")),
      el("td", {}, status),
      cell(num(s.indexed_rows) + " / " + num(s.unindexed_rows), "num"),
      cell(num(s.segments), "num"),
      cell(num(s.memtable_rows), "num"),
      cell(bytes(s.wal_bytes), "num"),
      cell(when(s.last_compaction_at), "nowrap"),
      el("td", {}, el("button", { type: "button", on: { click: () => { selectCollection(c.name); location.hash = "#search"; } } },
        "Search")));
  }

  function fillCollectionSelects() {
    for (const select of document.querySelectorAll(".collection-select")) {
      const keep = select.value || sessionStorage.getItem("proximadb.collection") || "";
      select.replaceChildren(...state.collections.map((c) => el("option", { value: c.name }, c.name)));
      if (state.collections.some((c) => c.name === keep)) select.value = keep;
    }
  }

  function selectCollection(name) {
    sessionStorage.setItem("proximadb.collection", name);
    for (const select of document.querySelectorAll(".collection-select")) select.value = name;
    state.cursors = [null];
    state.page = 0;
  }

  // ------------------------------------------------------------------ records

  async function loadRecords() {
    const collection = $("records-collection").value;
    const body = $("records-table").tBodies[0];
    const table = $("records-table");
    if (!collection) {
      body.replaceChildren();
      $("records-position").textContent = "no collection";
      return;
    }
    const limit = Math.max(1, Math.min(1000, Number($("records-limit").value) || 20));
    const request = { limit, include_vectors: $("records-vectors").checked };
    const cursor = state.cursors[state.page];
    if (cursor !== null && cursor !== undefined) request.cursor = cursor;
    table.dataset.state = "loading";
    const ticket = ++state.recordsTicket; // only the latest request may draw the table
    const pageNumber = state.page;
    let page;
    try {
      page = await api("POST", "/collections/" + enc(collection) + "/vectors/scroll", request);
    } catch (err) {
      if (ticket !== state.recordsTicket) return;
      body.replaceChildren(el("tr", {}, el("td", { colspan: "4", class: "error" }, errorText(err))));
      table.dataset.state = "error";
      return;
    }
    if (ticket !== state.recordsTicket) return;
    state.nextCursor = page.next_cursor;
    body.replaceChildren(...page.records.map((rec) => recordRow(collection, rec)));
    const first = pageNumber * limit + 1;
    $("records-position").textContent = page.records.length
      ? "page " + (pageNumber + 1) + " · records " + first + "–" + (first + page.records.length - 1)
      : "page " + (pageNumber + 1) + " · no records";
    $("records-prev").disabled = pageNumber === 0;
    $("records-next").disabled = !state.nextCursor;
    table.dataset.state = "loaded";
    table.dataset.page = String(pageNumber + 1);
  }

  function recordRow(collection, rec) {
    let vector = "";
    if (Array.isArray(rec.vector)) {
      const head = rec.vector.slice(0, 4).map((v) => v.toFixed(3)).join(", ");
      vector = "[" + head + (rec.vector.length > 4 ? ", …" : "") + "] (" + rec.vector.length + ")";
    }
    const searchLike = () => {
      selectCollection(collection);
      $("search-vector").value = "";
      $("search-record-id").value = rec.id;
      state.searchOnShow = true;
      location.hash = "#search";
    };
    return el("tr", { "data-id": rec.id },
      el("td", { class: "mono" }, rec.id),
      el("td", {}, el("code", {}, json(rec.metadata))),
      el("td", { class: "mono" }, vector),
      el("td", {}, el("button", { type: "button", on: { click: searchLike } }, "Similar")));
  }

  // ------------------------------------------------------------------ search

  function parseJson(text, what) {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new Error(what + " is not valid JSON: " + err.message);
    }
  }

  async function runSearch(event) {
    event.preventDefault();
    const summary = $("search-summary");
    const body = $("search-hits").tBodies[0];
    const table = $("search-hits");
    table.dataset.state = "loading";
    summary.className = "muted";
    const ticket = ++state.searchTicket; // a search sent meanwhile supersedes this one
    const stale = () => ticket !== state.searchTicket;
    try {
      const collection = $("search-collection").value;
      if (!collection) throw new Error("choose a collection");
      const vectorText = $("search-vector").value.trim();
      const recordId = $("search-record-id").value.trim();
      let vector;
      let source;
      if (vectorText) {
        vector = parseJson(vectorText, "the query vector");
        if (!Array.isArray(vector) || !vector.every((v) => typeof v === "number")) {
          throw new Error("the query vector must be a JSON array of numbers");
        }
        source = "pasted vector";
      } else if (recordId) {
        const rec = await api("GET", "/collections/" + enc(collection) + "/vectors/" + enc(recordId));
        vector = rec.vector;
        source = "the vector of record " + recordId;
      } else {
        throw new Error("paste a query vector or give a record id");
      }
      const kText = $("search-k").value.trim();
      const request = { vector, k: kText ? Number(kText) : 10, include_metadata: true };
      const filterText = $("search-filter").value.trim();
      if (filterText) {
        const filter = parseJson(filterText, "the filter");
        if (filter === null || typeof filter !== "object" || Array.isArray(filter)) {
          throw new Error("the filter must be a JSON object");
        }
        request.filter = filter;
      }
      const ef = $("search-ef").value.trim();
      if (ef) request.ef = Number(ef);
      const hits = await api("POST", "/collections/" + enc(collection) + "/search", request);
      if (stale()) return;
      body.replaceChildren(...hits.map((hit, i) => el("tr", { "data-id": hit.id },
        el("td", { class: "num" }, i + 1),
        el("td", { class: "mono" }, hit.id),
        el("td", { class: "num" }, typeof hit.score === "number" ? hit.score.toFixed(4) : "–"),
        el("td", { class: "num" }, typeof hit.distance === "number" ? hit.distance.toFixed(4) : "–"),
        el("td", {}, el("code", {}, json(hit.metadata))))));
      summary.textContent = hits.length + " hit" + (hits.length === 1 ? "" : "s") + " in " + collection +
        " for " + source + " (k=" + request.k + (request.ef ? ", ef=" + request.ef : "") +
        (request.filter ? ", filtered" : "") + ")";
      table.dataset.state = "loaded";
    } catch (err) {
      if (stale()) return;
      body.replaceChildren();
      summary.textContent = errorText(err);
      summary.className = "error";
      table.dataset.state = "error";
    }
  }

  // ------------------------------------------------------------------ metrics (metrics.js parses and draws)

  const { parsePrometheus, summarise, quantile, drawChart } = window.ProximaMetrics;
  const COLORS = { ingest: "#2f5fd0", queries: "#d0582f", p50: "#1a8a4a", p95: "#b7791f", p99: "#c0392b" };
  const AXIS = { history: HISTORY, minSlots: MIN_SLOTS, secondsPerSample: POLL_SECONDS };

  async function pollMetrics() {
    let text;
    try {
      text = await api("GET", "/metrics");
    } catch (err) {
      $("metrics-totals").textContent = errorText(err);
      return;
    }
    const now = summarise(parsePrometheus(text));
    const before = state.prev;
    state.prev = now;
    $("metrics-totals").textContent = "since start: " + num(now.written) + " records written, " +
      num(now.queries) + " queries";
    if (!before) return;
    const dt = now.t - before.t;
    const rate = (a, b) => (dt > 0 && a >= b ? (a - b) / dt : null);
    const ms = (v) => (v === null ? null : v * 1000);
    const sample = {
      t: now.t,
      ingest: rate(now.written, before.written),
      queries: rate(now.queries, before.queries),
      p50: ms(quantile(0.5, now, before)),
      p95: ms(quantile(0.95, now, before)),
      p99: ms(quantile(0.99, now, before)),
    };
    state.samples.push(sample);
    if (state.samples.length > HISTORY) state.samples.shift();
    const fmt = (v, digits) => (v === null ? "–" : v.toFixed(digits));
    $("now-ingest").textContent = fmt(sample.ingest, 1);
    $("now-queries").textContent = fmt(sample.queries, 1);
    $("now-p50").textContent = sample.p50 === null ? "–" : fmt(sample.p50, 2) + " ms";
    $("now-p95").textContent = sample.p95 === null ? "–" : fmt(sample.p95, 2) + " ms";
    $("now-p99").textContent = sample.p99 === null ? "–" : fmt(sample.p99, 2) + " ms";
    $("page-metrics").dataset.samples = String(state.samples.length);
    if (currentPage() === "metrics") drawCharts();
  }

  function startMetrics() {
    if (state.metricsTimer !== null) clearInterval(state.metricsTimer);
    state.prev = null;
    state.samples = [];
    pollMetrics();
    state.metricsTimer = setInterval(() => {
      if (document.visibilityState !== "hidden") pollMetrics();
    }, POLL_SECONDS * 1000);
  }

  function drawCharts() {
    const pick = (key) => state.samples.map((s) => s[key]);
    drawChart($("chart-rates"), [
      { name: "ingest records/s", color: COLORS.ingest, values: pick("ingest") },
      { name: "queries/s", color: COLORS.queries, values: pick("queries") },
    ], AXIS);
    drawChart($("chart-latency"), [
      { name: "p50", color: COLORS.p50, values: pick("p50") },
      { name: "p95", color: COLORS.p95, values: pick("p95") },
      { name: "p99", color: COLORS.p99, values: pick("p99") },
    ], AXIS);
  }

  // ------------------------------------------------------------------ start

  async function showServer() {
    try {
      const health = await api("GET", "/health");
      $("server-info").textContent = "version " + health.version + " · up " + Math.round(health.uptime_seconds) + " s";
    } catch (err) {
      $("server-info").textContent = errorText(err);
    }
  }

  function start() {
    $("metrics-interval").textContent = String(POLL_SECONDS);
    $("api-key").value = apiKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
      hideBanner();
      startMetrics();
      showPage();
    });
    $("key-clear").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      $("api-key").value = "";
      startMetrics();
      showPage();
    });
    $("collections-refresh").addEventListener("click", () => loadCollections());
    $("records-collection").addEventListener("change", (event) => { selectCollection(event.target.value); loadRecords(); });
    $("records-limit").addEventListener("change", () => { state.cursors = [null]; state.page = 0; loadRecords(); });
    $("records-vectors").addEventListener("change", () => loadRecords());
    $("records-first").addEventListener("click", () => { state.page = 0; loadRecords(); });
    $("records-prev").addEventListener("click", () => { if (state.page > 0) { state.page -= 1; loadRecords(); } });
    $("records-next").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.page += 1;
      state.cursors[state.page] = state.nextCursor;
      state.cursors.length = state.page + 1;
      loadRecords();
    });
    $("search-collection").addEventListener("change", (event) => selectCollection(event.target.value));
    $("search-form").addEventListener("submit", runSearch);
    window.addEventListener("hashchange", showPage);
    window.addEventListener("resize", () => { if (currentPage() === "metrics") drawCharts(); });
    showServer();
    startMetrics();
    showPage();
  }

  start();
})();
