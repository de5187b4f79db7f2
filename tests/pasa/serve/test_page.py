"""The page of ``pasa serve`` in headless Chromium: a finished search rendered at ``/?id=...``, a query submitted
through the form, the citation tree, a screenshot.

The server runs in this process (uvicorn in a thread, demo agent with a scripted selector); the browser is Debian's
``chromium``, driven through the Chrome DevTools protocol (``websocket-client``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.pasa.serve.helpers import scripted_agent, wait_for

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: install Debian's `chromium` package (.ci/run does when it can)"
)
QUERY = "Give me papers about retrieval-augmented generation for language models"
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions")


@contextmanager
def serve_app(out: Path, api_key: str | None = None, agent=None):
    """A ``pasa serve`` app (scripted demo agent) in a thread on a free loopback port; yields its URL."""
    import uvicorn

    from pasa.serve.app import create_app
    from pasa.serve.jobs import SearchQueue
    from pasa.serve.server import bind_socket

    queue = SearchQueue(agent or scripted_agent(), str(out))
    app = create_app(queue, api_key, {"demo": True, "crawler": "c", "selector": "s"})
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, what="the server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serve_app(tmp_path_factory.mktemp("page") / "out") as url:
        yield url


def finished_search(url: str, query: str = QUERY) -> dict:
    with httpx.Client(base_url=url, timeout=30) as client:
        search_id = client.post("/api/search", json={"query": query}).json()["id"]
        return wait_for(
            lambda: (b := client.get(f"/api/search/{search_id}").json())["status"] == "done" and b,
            60,
            what="the search",
        )


def run_chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_finished_search_renders_its_papers(app_url, tmp_path):
    search = finished_search(app_url)
    run = run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", f"{app_url}/?id={search['id']}")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    best = search["papers"][0]
    assert best["title"] in dom
    assert f'href="https://arxiv.org/abs/{best["arxiv_id"]}"' in dom
    assert 'class="status done"' in dom
    assert "✓ selected" in dom


def test_screenshot_of_a_finished_search(app_url, tmp_path):
    search = finished_search(app_url)
    shot = tmp_path / "search.png"
    run = run_chromium(
        tmp_path,
        "--virtual-time-budget=10000",
        "--window-size=1280,1000",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        f"{app_url}/?id={search['id']}",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        self.ws.close()


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium with a DevTools port; yields a ``DevTools`` on its first page."""
    proc = subprocess.Popen(
        [
            CHROMIUM,
            *BROWSER_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def port():
        line = proc.stderr.readline()
        lines.append(line)
        return line.split(":")[-1].split("/")[0] if line.startswith("DevTools listening on ws://") else None

    try:
        devtools_port = wait_for(port, 60, 0, "Chromium's DevTools port")
        threading.Thread(target=lambda: [lines.append(x) for x in proc.stderr], daemon=True).start()
        pages = wait_for(
            lambda: [
                t for t in httpx.get(f"http://127.0.0.1:{devtools_port}/json/list").json() if t["type"] == "page"
            ],
            30,
            what="a page",
        )
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield tools
        tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def page_state(tools: DevTools) -> dict:
    return tools.evaluate(
        """({
            status: document.getElementById("status")?.textContent || "",
            url: location.href,
            titles: [...document.querySelectorAll("#papers .title")].map((e) => e.textContent),
            message: document.getElementById("message")?.hidden ? "" : document.getElementById("message")?.textContent || "",
        })"""
    )


def test_query_submitted_through_the_form_shows_its_result(app_url, browser, tmp_path):
    query = "Give me papers about dense passage retrieval for open-domain question answering"
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{app_url}/")
    wait_for(
        lambda: browser.evaluate('document.readyState == "complete" && !!document.getElementById("query")'),
        30,
        what="the page to load",
    )
    browser.evaluate(
        f"""document.getElementById("query").value = {json.dumps(query)};
        document.getElementById("submit").click(); true"""
    )
    state = wait_for(
        lambda: (s := page_state(browser))["status"] == "done" and s["titles"] and s, 60, 0.2, "the result to appear"
    )
    assert "?id=" in state["url"]
    search_id = state["url"].split("?id=")[1]
    with httpx.Client(base_url=app_url) as client:
        body = client.get(f"/api/search/{search_id}").json()
    assert body["query"] == query
    assert state["titles"] == [p["title"] for p in body["papers"]]
    assert browser.evaluate('document.getElementById("result-query").textContent') == query
    assert query in browser.evaluate('document.getElementById("recent").textContent')

    # the citation tree: every paper of the search, nested under its query or its citing paper's section
    browser.evaluate('document.querySelector("#tabs [data-tab=tree]").click(); true')
    tree_titles = wait_for(
        lambda: browser.evaluate('[...document.querySelectorAll("#tree a")].map((a) => a.textContent)'),
        30,
        what="the citation tree",
    )
    assert sorted(tree_titles) == sorted(p["title"] for p in body["papers"])
    assert browser.evaluate('document.getElementById("tree").hidden') is False

    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    assert len(shot) > 10_000


def test_unknown_id_shows_a_message(app_url, browser):
    browser.call("Page.navigate", url=f"{app_url}/?id=12345")
    state = wait_for(lambda: (s := page_state(browser))["message"] and s, 30, 0.1, "the message")
    assert "No search with id 12345" in state["message"]
    assert state["titles"] == []


def test_page_asks_for_the_api_key_and_then_shows_the_search(browser, tmp_path):
    with serve_app(tmp_path / "out", api_key="s3cret") as url:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer s3cret"}, timeout=30) as client:
            search_id = client.post("/api/search", json={"query": QUERY}).json()["id"]
            wait_for(lambda: client.get(f"/api/search/{search_id}").json()["status"] == "done", 60, what="the search")
        browser.call("Page.navigate", url=f"{url}/?id={search_id}")
        wait_for(
            lambda: browser.evaluate(
                '!!document.getElementById("key-form") && !document.getElementById("key-form").hidden'
            ),
            30,
            0.1,
            "the API key form",
        )
        assert page_state(browser)["titles"] == []
        browser.evaluate(
            """document.getElementById("api-key").value = "s3cret";
            document.querySelector("#key-form button").click(); true"""
        )
        state = wait_for(lambda: (s := page_state(browser))["titles"] and s, 30, 0.1, "the papers")
        assert state["status"] == "done" and QUERY in browser.evaluate('document.getElementById("recent").textContent')


def test_degraded_search_says_so_and_can_run_again(browser, tmp_path):
    agent = scripted_agent()
    inner = agent.source

    class LongQueriesFail:  # the full query's search fails, its halves' searches work
        def __getattr__(self, name):
            return getattr(inner, name)

        def search(self, query, *args, **kwargs):
            if len(query.split()) > 4:
                raise ConnectionError("search service down")
            return inner.search(query, *args, **kwargs)

    agent.source = LongQueriesFail()
    with serve_app(tmp_path / "out", agent=agent) as url:
        search = finished_search(url)
        assert search["degraded"] and search["papers"]
        browser.call("Page.navigate", url=f"{url}/?id={search['id']}")
        state = wait_for(lambda: (s := page_state(browser))["titles"] and s, 30, 0.1, "the papers")
        assert "Degraded result" in state["message"] and f"search: {search['failures']['search']}" in state["message"]
        browser.evaluate('document.querySelector("#message .again").click(); true')
        again = wait_for(
            lambda: (s := page_state(browser))["url"].endswith(f"?id={int(search['id']) + 1}") and s["titles"] and s,
            30,
            0.1,
            "the search run again",
        )
        with httpx.Client(base_url=url) as client:
            assert client.get(f"/api/search/{int(search['id']) + 1}").json()["query"] == QUERY
        assert again["status"] == "done"
