"""The web dashboard (GET /dashboard) in a real headless Chromium against a real daemon with API keys.

Debian's ``chromium`` driven by Playwright (``executable_path``; Playwright's own browser download is never
used). Each page is loaded and checked against what the SDK says: the collections table against ``stats``,
the record browser's pages against ``scroll``, the search form's hits against ``search``, the live charts
against traffic sent meanwhile; the key cases (none, wrong, read-only) and bad input in the search form.
Screenshots go to the test's tmp dir; ``PROXIMADB_UPDATE_SCREENSHOT=1`` also writes docs/dashboard.png
(the README's picture).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _daemon import Daemon

import proximadb
from proximadb.dashboard import ASSETS, read_asset

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it as root)",
                allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402  (after the skip: chromium first)

RW = "dash-rw-key-5b2e91"
RO = "dash-ro-key-c7d403"
DIM = 8
N = 320  # 300 flushed into a segment (then compacted and indexed) + 20 left in the memtable
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("dash") / "data", "--api-key", RW, "--read-only-api-key", RO) as d:
        vectors = np.random.default_rng(7).standard_normal((N, DIM)).astype(np.float32)
        with proximadb.connect_rest(d.rest_url, api_key=RW) as admin:
            admin.create_collection("docs", DIM, distance_metric="euclidean", indexing_algorithm="hnsw")
            admin.create_collection("empty", 3)
            ids = [f"doc-{i:03d}" for i in range(N)]
            metas = [{"lang": "en" if i % 2 else "de", "n": i} for i in range(N)]
            for part in (slice(0, 150), slice(150, 300)):  # two segments, merged into one
                admin.insert_vectors("docs", ids=ids[part], vectors=vectors[part], metadatas=metas[part])
                admin.flush("docs")
            assert admin.compact("docs")["segments_after"] == 1
            admin.wait_for_indexing("docs", timeout=60)
            admin.insert_vectors("docs", ids=ids[300:], vectors=vectors[300:], metadatas=metas[300:])
        yield d


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser, daemon: Daemon) -> Iterator[Page]:
    """A fresh browser context (its own sessionStorage); fails the test on any script error or failed load."""
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error"
          and "status of 401" not in msg.text and "status of 400" not in msg.text
          and "status of 404" not in msg.text else None)
    yield pg
    context.close()
    assert not problems, problems


def open_dashboard(page: Page, daemon: Daemon, key: str | None, hash_: str = "", query: str = "") -> None:
    page.goto(f"{daemon.rest_url}/dashboard{query}{hash_}")
    if key is not None:
        page.fill("#api-key", key)
        page.click("#key-form button[type=submit]")


def rows(page: Page, table: str) -> list[list[str]]:
    return [[c.strip() for c in r] for r in page.eval_on_selector_all(
        f"#{table} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")]


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000  # a real picture, not an empty page
    return path


def http_get(daemon: Daemon, path: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.rest_port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


# ---------------------------------------------------------------- the files themselves
def test_static_files_are_open_offline_and_nothing_else_is(daemon: Daemon) -> None:
    status, headers, body = http_get(daemon, "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == read_asset("index.html")
    assert "connect-src 'self'" in headers["content-security-policy"]
    for name, media in ASSETS.items():
        status, headers, body = http_get(daemon, f"/dashboard/{name}")
        assert (status, headers["content-type"]) == (200, media) and body == read_asset(name)
        assert not re.search(rb"(?:src|href)=[\"']?(?:https?:)?//", body), f"{name} loads something from elsewhere"
        assert b"import(" not in body and b"@import" not in body
    status, _, body = http_get(daemon, "/dashboard/secrets.txt")
    assert status == 404 and b'"not_found"' in body
    status, _, body = http_get(daemon, "/dashboard/..%2Fpyproject.toml")
    assert status == 404
    # The data stays behind the keys.
    assert http_get(daemon, "/collections")[0] == 401
    assert http_get(daemon, "/metrics")[0] == 401
    assert http_get(daemon, "/collections", RO)[0] == 200


# ---------------------------------------------------------------- API keys
def test_without_a_key_the_page_says_a_key_is_required(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    open_dashboard(page, daemon, None)
    banner = page.locator("#banner")
    banner.wait_for(state="visible")
    assert "API key required" in banner.inner_text()
    page.wait_for_selector("#collections-table[data-state=error]")
    assert page.inner_text("#collections-table tbody").startswith("unauthenticated: ")  # the server's error
    assert not any("docs" in r[0] for r in rows(page, "collections-table"))
    shot(page, tmp_path, "no-key")

    page.fill("#api-key", "not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('banner').textContent.includes('API key rejected')")
    assert page.evaluate("sessionStorage.getItem('proximadb.apiKey')") == "not-a-key"

    page.fill("#api-key", RO)  # a read-only key is enough: the dashboard only reads
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#collections-table tbody tr[data-collection=docs]")
    assert banner.is_hidden()
    assert page.evaluate("sessionStorage.getItem('proximadb.apiKey')") == RO
    page.reload()  # the key is kept for the tab's session
    page.wait_for_selector("#collections-table tbody tr[data-collection=docs]")
    page.click("#key-clear")
    page.wait_for_function("() => document.getElementById('banner').textContent.includes('API key required')")


# ---------------------------------------------------------------- collections
def test_collections_table_shows_the_stats(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    open_dashboard(page, daemon, RO)
    page.wait_for_selector("#collections-table tbody tr[data-collection=empty]")
    page.wait_for_selector("#collections-table tbody tr[data-collection=docs]")
    with proximadb.connect_rest(daemon.rest_url, api_key=RO) as client:
        stats = client.stats("docs")
    table = {r[0]: r for r in rows(page, "collections-table")}
    docs = table["docs"]
    assert docs[1:6] == [f"{N}", f"{DIM}", "euclidean", "hnsw", "yellow (not fully indexed)"]  # 20 in the memtable
    assert docs[6] == f"{stats['indexed_rows']} / {stats['unindexed_rows']}" == "300 / 20"
    assert docs[7:9] == [str(stats["segments"]), "20"]
    assert stats["wal_bytes"] > 0 and docs[9].endswith("B") and docs[9] != "0 B"
    assert stats["last_compaction_at"] is not None and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", docs[10])
    assert table["empty"][1:6] == ["0", "3", "cosine", "flat", "green (fully indexed)"]
    assert table["empty"][10] == "never"
    shot(page, tmp_path, "collections")
    if os.environ.get("PROXIMADB_UPDATE_SCREENSHOT") == "1":
        page.set_viewport_size({"width": 1480, "height": 260})
        page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)


# ---------------------------------------------------------------- records
def test_record_browser_pages_through_scroll(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    with proximadb.connect_rest(daemon.rest_url, api_key=RO) as client:
        first, _ = client.scroll("docs", limit=100)
    open_dashboard(page, daemon, RO, "#collections")
    page.wait_for_selector("#collections-table tbody tr[data-collection=docs]")
    page.click("#collections-table tr[data-collection=docs] a")  # the name opens its records
    page.wait_for_selector("#page-records:not([hidden])")
    page.fill("#records-limit", "100")
    page.dispatch_event("#records-limit", "change")
    page.wait_for_function("() => document.querySelectorAll('#records-table tbody tr').length === 100")
    seen = [r[0] for r in rows(page, "records-table")]
    assert seen == [r["id"] for r in first] == [f"doc-{i:03d}" for i in range(100)]
    assert rows(page, "records-table")[3][1] == '{"lang":"en","n":3}'
    assert page.is_disabled("#records-prev")
    for n in range(2, 5):
        page.click("#records-next")
        page.wait_for_selector(f"#records-table[data-state=loaded][data-page='{n}']")
        seen += [r[0] for r in rows(page, "records-table")]
    assert seen == [f"doc-{i:03d}" for i in range(N)]
    assert page.inner_text("#records-position") == "page 4 · records 301\u2013320"
    assert page.is_disabled("#records-next")
    page.check("#records-vectors")
    page.wait_for_function("() => document.querySelector('#records-table tbody tr td:nth-child(3)').textContent"
                           ".endsWith('(8)')")
    shot(page, tmp_path, "records")
    page.click("#records-prev")
    page.wait_for_selector("#records-table[data-state=loaded][data-page='3']")
    assert rows(page, "records-table")[0][0] == "doc-200"
    # "Similar" searches with that record's vector.
    page.click("#records-table tr[data-id=doc-250] button")
    page.wait_for_selector("#search-hits[data-state=loaded]")
    assert rows(page, "search-hits")[0][1] == "doc-250"
    assert "the vector of record doc-250" in page.inner_text("#search-summary")


# ---------------------------------------------------------------- search
def run_search(page: Page, *, vector: str = "", record: str = "", filter_: str = "", k: int = 10,
               ef: str = "") -> str:
    page.fill("#search-vector", vector)
    page.fill("#search-record-id", record)
    page.fill("#search-filter", filter_)
    page.fill("#search-k", str(k))
    page.fill("#search-ef", ef)
    page.evaluate("document.getElementById('search-hits').dataset.state = ''")
    page.click("#search-run")
    page.wait_for_selector("#search-hits[data-state=loaded], #search-hits[data-state=error]")
    return str(page.get_attribute("#search-hits", "data-state"))


def test_search_form_shows_the_hits_the_sdk_gets(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    with proximadb.connect_rest(daemon.rest_url, api_key=RO) as client:
        rec: Any = client.get_vector("docs", "doc-007")
        query = [float(v) for v in rec["vector"]]
        expect = client.search("docs", query, k=5)
        expect_de = client.search("docs", query, k=7, filter={"lang": "de", "n": {"$gte": 100}}, ef=64)
        expect_by_id = client.search("docs", client.get_vector("docs", "doc-011")["vector"], k=3)  # type: ignore[index]
    open_dashboard(page, daemon, RO, "#search")
    page.wait_for_selector("#search-collection option[value=docs]", state="attached")
    page.select_option("#search-collection", "docs")

    assert run_search(page, vector=json.dumps(query), k=5) == "loaded", page.inner_text("#search-summary")
    hits = rows(page, "search-hits")
    assert [h[1] for h in hits] == [h["id"] for h in expect] and hits[0][1] == "doc-007"
    assert [h[3] for h in hits] == [f"{h['distance']:.4f}" for h in expect]
    assert hits[0][4] == '{"lang":"en","n":7}'
    assert page.inner_text("#search-summary").startswith("5 hits in docs for pasted vector (k=5)")
    shot(page, tmp_path, "search")

    assert run_search(page, vector=json.dumps(query), filter_='{"lang": "de", "n": {"$gte": 100}}', k=7,
                      ef="64") == "loaded", page.inner_text("#search-summary")
    hits = rows(page, "search-hits")
    assert [h[1] for h in hits] == [h["id"] for h in expect_de] and len(hits) == 7
    assert all('"lang":"de"' in h[4] for h in hits)
    assert "ef=64, filtered" in page.inner_text("#search-summary")

    assert run_search(page, record="doc-011", k=3) == "loaded", page.inner_text("#search-summary")
    assert [h[1] for h in rows(page, "search-hits")] == [h["id"] for h in expect_by_id]

    # Bad input: a message, no hits; the server's typed error where it is the server that refuses.
    for kwargs, message in (
        ({"vector": "[1, 2, 3]"}, "dimension_mismatch"),
        ({"vector": "[1, 2,"}, "the query vector is not valid JSON"),
        ({"vector": '{"a": 1}'}, "the query vector must be a JSON array of numbers"),
        ({"record": "no-such-id"}, "not_found"),
        ({}, "paste a query vector or give a record id"),
        ({"vector": json.dumps(query), "filter_": "[1]"}, "the filter must be a JSON object"),
        ({"vector": json.dumps(query), "filter_": '{"n": {"$near": 3}}'},
         "invalid_filter: filter.n: unknown operator $near"),
        ({"vector": json.dumps(query), "k": 10_001}, "validation_error: k must be an integer from 1 to 10000"),
    ):
        assert run_search(page, **kwargs) == "error", kwargs  # type: ignore[arg-type]
        assert message in page.inner_text("#search-summary"), (kwargs, page.inner_text("#search-summary"))
        assert rows(page, "search-hits") == []
    shot(page, tmp_path, "search-error")


# ---------------------------------------------------------------- live metrics
def test_metrics_charts_follow_the_traffic(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    stop = threading.Event()

    def traffic() -> None:  # writes and searches over both protocols until the page has seen them
        rng = np.random.default_rng(3)
        with proximadb.connect_rest(daemon.rest_url, api_key=RW) as rest, \
                proximadb.connect_grpc(daemon.grpc_target, api_key=RW) as grpc_client:
            n = 0
            while not stop.is_set():
                vecs = rng.standard_normal((30, DIM)).astype(np.float32)  # 30 records per 10 queries: two lines
                rest.insert_vectors("docs", ids=[f"live-{n + i}" for i in range(30)], vectors=vecs)
                n += 30
                for client in (rest, grpc_client):
                    client.search("docs", vecs[0], k=5)
                    client.search_batch("docs", vecs[:4], k=3)

    open_dashboard(page, daemon, RO, "#metrics", "?interval=0.5")
    page.wait_for_selector("#page-metrics:not([hidden])")
    assert page.inner_text("#metrics-interval") == "0.5"
    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        # One reading of the page (later polls, after the traffic stops, change it): once a sample shows
        # both rates and a latency. A function, not an expression: the page's CSP forbids eval.
        now = page.wait_for_function("""() => {
            const text = (id) => document.getElementById(id).textContent;
            const reading = {ingest: Number(text('now-ingest')), queries: Number(text('now-queries')),
                             p50: parseFloat(text('now-p50')), p95: parseFloat(text('now-p95')),
                             p99: parseFloat(text('now-p99')), totals: text('metrics-totals'),
                             samples: Number(document.getElementById('page-metrics').dataset.samples)};
            return reading.ingest > reading.queries && reading.queries > 0 && reading.p99 > 0
                && reading.samples >= 4 ? reading : null;
        }""", timeout=60_000).json_value()
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert 0 < now["p50"] <= now["p95"] <= now["p99"] < 10_000
    # 3 records per query sent; the rates are the daemon's counters over one poll, so only roughly 3:1.
    assert now["ingest"] > now["queries"] > 0
    totals = re.fullmatch(r"since start: ([\d,]+) records written, ([\d,]+) queries", now["totals"])
    assert totals is not None, now["totals"]
    assert int(totals[1].replace(",", "")) >= N + 30  # the fixture's inserts count too: the daemon's own counter
    assert int(totals[2].replace(",", "")) >= 10
    shot(page, tmp_path, "metrics")
    # The lines are on the canvases: pixels in each series' colour.
    for canvas, colours in (("chart-rates", ["#2f5fd0", "#d0582f"]), ("chart-latency", ["#1a8a4a", "#c0392b"])):
        for colour in colours:
            assert coloured_pixels(page, canvas, colour) > 40, (canvas, colour)


def coloured_pixels(page: Page, canvas: str, colour: str) -> int:
    """How many pixels of the canvas's plot area (below the legend) have about this colour."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return int(page.evaluate(
        """([id, r, g, b]) => {
            const c = document.getElementById(id);
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            const top = Math.ceil(20 * (window.devicePixelRatio || 1)) * c.width * 4;  // below the legend
            for (let i = top; i < data.length; i += 4) {
                if (Math.abs(data[i] - r) < 12 && Math.abs(data[i + 1] - g) < 12 && Math.abs(data[i + 2] - b) < 12) n++;
            }
            return n;
        }""", [canvas, r, g, b]))
