"""pasa.tools.http against a loopback server: retries on 429/503/timeouts/truncated bodies then a clean give-up,
Retry-After honoured, cache hits without a request, secrets kept out of the cache, per-host rate limit."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from pasa.tools.http import (
    BadAnswerError,
    HttpClient,
    HttpConfig,
    HTTPStatusError,
    PaperNotFoundError,
    RateLimiter,
    ServiceArgs,
    ServiceError,
    parse_retry_after,
)


# -- loopback server (also used by the connector and source tests) ---------------------------------------------------
@dataclass
class Reply:
    """One scripted answer: status, body, headers; ``delay`` seconds before answering; ``truncate`` sends only the
    first bytes of the body while announcing its full length."""

    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: int | None = None


class Script:
    """Path -> replies served in order (the last one repeats; a callable answers from the request dict);
    records every request."""

    def __init__(self, routes: dict[str, list[Reply] | Reply]):
        self.routes = {k: (v if isinstance(v, list) else [v]) for k, v in routes.items()}
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    def next_reply(self, path: str, request: dict) -> Reply:
        with self._lock:
            replies = self.routes.get(path)
            if not replies:
                return Reply(404, b"not found")
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request) if callable(reply) else reply

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r["path"] == path)


@contextmanager
def serve(script: Script):
    """A threaded HTTP server on 127.0.0.1 (port 0) answering from ``script``; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "headers": dict(self.headers),
                "body": body,
            }
            with script._lock:
                script.requests.append(request)
            reply = script.next_reply(parts.path, request)
            if reply.delay:
                time.sleep(reply.delay)
            payload = reply.body
            if isinstance(payload, dict):
                payload = json.dumps(payload)
            if isinstance(payload, str):
                payload = payload.encode("utf-8")
            try:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                if reply.truncate is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload if reply.truncate is None else payload[: reply.truncate])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout)
                pass
            if reply.truncate is not None:
                self.close_connection = True

        do_GET = do_POST = _answer

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class SleepRecorder:
    """Stands in for ``time.sleep``: records the waits instead of sleeping (tests stay fast and untimed)."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(
    tmp_path,
    cache: bool = True,
    sleep=None,
    max_retries: int = 2,
    timeout: float = 2.0,
    max_wait: float = 90.0,
    retry_after_max: float = 60.0,
    min_interval: dict[str, float] | None = None,
) -> HttpClient:
    """A client with a private cache folder, fast backoff, a short read timeout and no rate limit (unless
    ``min_interval`` gives one)."""
    config = HttpConfig(
        no_cache=not cache,
        cache_dir=str(tmp_path / "cache"),
        http_retries=max_retries,
        http_backoff=0.01,
        http_backoff_max=0.05,
        http_timeout=timeout,
        http_max_wait=max_wait,
        http_retry_after_max=retry_after_max,
    )
    config.backoff_jitter = 0.0
    config.min_interval = dict(min_interval or {})
    return HttpClient(config, sleep=sleep or SleepRecorder())


@pytest.fixture(autouse=True)
def _no_env_cache(monkeypatch):
    monkeypatch.delenv("PASA_NO_CACHE", raising=False)


# -- retries and give-up ----------------------------------------------------------------------------------------------
def test_retries_429_then_succeeds_and_honours_retry_after(tmp_path):
    sleeps = SleepRecorder()
    script = Script({"/x": [Reply(429, "slow down", {"Retry-After": "7"}), Reply(503, "busy"), Reply(200, "ok")]})
    with serve(script) as url, make_client(tmp_path, sleep=sleeps) as http:
        resp = http.get(f"{url}/x")
    assert resp.text == "ok"
    assert script.count("/x") == 3
    assert sleeps.waits[0] == 7.0  # the server's Retry-After, not the 0.01 s backoff
    assert sleeps.waits[1] < 1.0  # exponential backoff for the 503


def test_gives_up_cleanly_after_max_retries(tmp_path):
    script = Script({"/down": Reply(503, "down")})
    with serve(script) as url, make_client(tmp_path, max_retries=3) as http:
        with pytest.raises(HTTPStatusError, match="gave up after 4 attempts") as info:
            http.get(f"{url}/down")
    assert info.value.status_code == 503 and script.count("/down") == 4


def test_client_error_is_not_retried(tmp_path):
    script = Script({"/missing": Reply(404, "nope")})
    with serve(script) as url, make_client(tmp_path) as http:
        with pytest.raises(HTTPStatusError, match="404") as info:
            http.get(f"{url}/missing")
    assert info.value.status_code == 404 and script.count() == 1


def test_check_status_false_returns_the_error_response(tmp_path):
    script = Script({"/busy": Reply(503, "busy")})
    with serve(script) as url, make_client(tmp_path, max_retries=1) as http:
        resp = http.get(f"{url}/busy", check_status=False)
    assert resp.status_code == 503 and script.count() == 2


def test_slow_response_times_out_then_retry_succeeds(tmp_path):
    script = Script({"/slow": [Reply(200, "late", delay=1.0), Reply(200, "fast")]})
    with serve(script) as url, make_client(tmp_path, timeout=0.2) as http:
        assert http.get(f"{url}/slow").text == "fast"
    assert script.count("/slow") == 2


def test_slow_responses_give_up_with_service_error(tmp_path):
    script = Script({"/slow": Reply(200, "late", delay=0.6)})
    with serve(script) as url, make_client(tmp_path, timeout=0.2, max_retries=1) as http:
        with pytest.raises(ServiceError, match="Timeout") as info:
            http.get(f"{url}/slow")
    assert info.value.status_code is None


def test_truncated_body_is_retried_and_never_cached(tmp_path):
    body = json.dumps({"organic": [{"link": "https://arxiv.org/abs/1810.04805"}] * 20})
    script = Script({"/t": [Reply(200, body, truncate=25), Reply(200, body)]})
    with serve(script) as url, make_client(tmp_path) as http:
        assert http.get(f"{url}/t").json()["organic"][0]["link"].endswith("1810.04805")
        assert script.count("/t") == 2
        http.get(f"{url}/t")  # the full body was cached, the truncated one was not
    assert script.count("/t") == 2


def test_truncated_bodies_give_up_cleanly(tmp_path):
    script = Script({"/t": Reply(200, "x" * 100, truncate=10)})
    with serve(script) as url, make_client(tmp_path, max_retries=1) as http:
        with pytest.raises(ServiceError, match="gave up after 2 attempts"):
            http.get(f"{url}/t")


def test_connection_refused_gives_up(tmp_path):
    with serve(Script({})) as url:
        dead = url  # the port is closed once the server is shut down
    with make_client(tmp_path, max_retries=1) as http:
        with pytest.raises(ServiceError, match="ConnectionError"):
            http.get(f"{dead}/x")


# -- cache --------------------------------------------------------------------------------------------------------------
def test_cache_serves_repeat_without_a_request(tmp_path):
    script = Script({"/a": Reply(200, {"v": 1})})
    with serve(script) as url:
        with make_client(tmp_path) as http:
            assert http.get(f"{url}/a", params={"q": "x"}).json() == {"v": 1}
            assert http.get(f"{url}/a", params={"q": "x"}).json() == {"v": 1}
            assert script.count() == 1 and http.network_requests == 1
            http.get(f"{url}/a", params={"q": "y"})  # another key
            assert script.count() == 2
        with make_client(tmp_path) as again:  # a new process reads the same file
            again.get(f"{url}/a", params={"q": "x"})
            assert script.count() == 2 and again.network_requests == 0


def test_post_cached_by_body_and_secret_headers_never_stored(tmp_path):
    script = Script({"/search": Reply(200, {"organic": []})})
    with serve(script) as url, make_client(tmp_path) as http:
        http.post(f"{url}/search", json={"q": "a"}, headers={"X-API-KEY": "secret-1"})
        http.post(f"{url}/search", json={"q": "a"}, headers={"X-API-KEY": "secret-2"})  # same key: cached
        http.post(f"{url}/search", json={"q": "b"}, headers={"X-API-KEY": "secret-1"})
        cache_path = http.cache_path
    assert script.count() == 2
    assert script.requests[0]["headers"]["X-API-KEY"] == "secret-1"  # the key was sent ...
    with sqlite3.connect(cache_path) as con:  # ... but is nowhere in the cache file
        blobs = b"".join(bytes(v) for (v,) in con.execute("SELECT value FROM responses"))
    assert blobs and b"secret-1" not in blobs and b"secret-2" not in blobs


def test_error_answers_are_not_cached(tmp_path):
    script = Script({"/e": [Reply(404, "no"), Reply(200, "yes")]})
    with serve(script) as url, make_client(tmp_path) as http:
        with pytest.raises(HTTPStatusError):
            http.get(f"{url}/e")
        assert http.get(f"{url}/e").text == "yes"
    assert script.count() == 2


@pytest.mark.parametrize("how", ["flag", "env", "per_request"])
def test_cache_can_be_disabled(tmp_path, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("PASA_NO_CACHE", "1")
    script = Script({"/n": Reply(200, "x")})
    with serve(script) as url, make_client(tmp_path, cache=(how == "per_request")) as http:
        kwargs = {"cache": False} if how == "per_request" else {}
        http.get(f"{url}/n", **kwargs)
        http.get(f"{url}/n", **kwargs)
    assert script.count() == 2
    if how != "per_request":
        assert not (tmp_path / "cache").exists()


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PASA_CACHE_DIR", str(tmp_path / "elsewhere"))
    config = HttpConfig()
    assert config.cache_dir == str(tmp_path / "elsewhere")


# -- rate limit ------------------------------------------------------------------------------------------------------
def test_rate_limiter_spaces_requests_per_host():
    now = [100.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    limiter = RateLimiter({"export.arxiv.org": 3.0}, default=0.0, clock=lambda: now[0], sleep=sleep)
    assert limiter.wait("export.arxiv.org") == 0.0
    assert limiter.wait("export.arxiv.org") == pytest.approx(3.0)
    now[0] += 10.0
    assert limiter.wait("export.arxiv.org") == 0.0  # enough time has passed
    assert limiter.wait("google.serper.dev") == 0.0  # other hosts are not limited
    assert sleeps == [pytest.approx(3.0)]


def test_rate_limit_applies_to_network_requests_only(tmp_path):
    sleeps = SleepRecorder()
    script = Script({"/r": Reply(200, "x")})
    with serve(script) as url, make_client(tmp_path, sleep=sleeps, min_interval={"127.0.0.1": 30.0}) as http:
        http.get(f"{url}/r", params={"i": 1})
        http.get(f"{url}/r", params={"i": 1})  # cache hit: no wait
        assert not [w for w in sleeps.waits if w > 1]
        http.get(f"{url}/r", params={"i": 2})  # network: waits for the host's slot
    assert [w for w in sleeps.waits if w > 1] and max(sleeps.waits) <= 30.0


def test_parse_retry_after_forms():
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


# -- bad answers are never cached ----------------------------------------------------------------
def _json_object(resp):
    payload = resp.json()
    if not isinstance(payload, dict):
        raise ValueError("not an object")
    return payload


def test_garbage_200_is_not_cached_and_the_rerun_gets_the_good_answer(tmp_path):
    script = Script({"/s": Reply(200, "{garbled")})
    with serve(script) as url:
        with make_client(tmp_path, max_retries=1) as http:
            with pytest.raises(BadAnswerError, match="bad answer"):
                http.get_parsed(f"{url}/s", _json_object)
        assert script.count() == 2  # a bad answer is retried like a 503
        script.routes["/s"] = [Reply(200, {"ok": 1})]  # the fault is gone
        with make_client(tmp_path) as http:  # same cache file
            assert http.get_parsed(f"{url}/s", _json_object) == {"ok": 1}
            assert http.get_parsed(f"{url}/s", _json_object) == {"ok": 1}  # now from the cache
        assert script.count() == 3


def test_garbage_then_good_answer_within_one_request(tmp_path):
    script = Script({"/s": [Reply(200, ""), Reply(200, {"ok": 2})]})
    with serve(script) as url, make_client(tmp_path) as http:
        assert http.get_parsed(f"{url}/s", _json_object) == {"ok": 2}
        assert http.get_parsed(f"{url}/s", _json_object) == {"ok": 2}
    assert script.count() == 2


def test_a_bad_answer_already_in_the_cache_is_evicted(tmp_path):
    script = Script({"/s": [Reply(200, "[1, 2]"), Reply(200, {"ok": 3})]})
    with serve(script) as url, make_client(tmp_path) as http:
        assert http.get(f"{url}/s").json() == [1, 2]  # cached without a validator (an old cache file)
        assert http.get_parsed(f"{url}/s", _json_object) == {"ok": 3}  # fails validation: evicted, refetched
    assert script.count() == 2


def test_not_found_from_the_parser_is_a_valid_cached_answer(tmp_path):
    def none_here(resp):
        raise PaperNotFoundError("no such paper")

    script = Script({"/s": Reply(200, "<feed/>")})
    with serve(script) as url, make_client(tmp_path) as http:
        for _ in range(2):
            with pytest.raises(PaperNotFoundError):
                http.get_parsed(f"{url}/s", none_here)
    assert script.count() == 1


# -- a cap on what one request may cost -----------------------------------------------------------
def test_long_retry_after_gives_up_at_once(tmp_path):
    sleeps = SleepRecorder()
    script = Script({"/x": Reply(429, "come back later", {"Retry-After": "3600"})})
    with serve(script) as url, make_client(tmp_path, sleep=sleeps, max_retries=4, retry_after_max=60.0) as http:
        with pytest.raises(HTTPStatusError, match="retry after 3600 s") as info:
            http.get(f"{url}/x")
    assert sleeps.waits == [] and script.count() == 1 and info.value.status_code == 429


def test_total_wait_is_capped(tmp_path):
    sleeps = SleepRecorder()
    script = Script({"/x": Reply(503, "busy", {"Retry-After": "20"})})
    with serve(script) as url, make_client(tmp_path, sleep=sleeps, max_retries=10, max_wait=50.0) as http:
        with pytest.raises(HTTPStatusError, match="max_wait 50 s reached"):
            http.get(f"{url}/x")
    assert sum(sleeps.waits) <= 50.0 and script.count() == 3  # 2 sleeps of 20 s fit, a third would not


def test_hung_server_costs_about_max_wait(tmp_path):
    script = Script({"/hang": Reply(200, "late", delay=2.0)})
    with serve(script) as url, make_client(tmp_path, timeout=0.5, max_retries=10, max_wait=1.2) as http:
        t0 = time.monotonic()
        with pytest.raises(ServiceError, match="Timeout"):
            http.get(f"{url}/hang")
        assert time.monotonic() - t0 < 2.0  # not 11 x 0.5 s


def test_queueing_for_our_own_rate_limit_does_not_count_against_max_wait(tmp_path):
    # four lookups queue behind a 0.3 s per-host interval: the last one waits ~0.9 s for its first slot, longer
    # than max_wait; the budget is for the server's time, so each still gets its retry after one 503
    script = Script({f"/{p}": [Reply(503, "busy"), Reply(200, "ok")] for p in "abcd"})
    with (
        serve(script) as url,
        make_client(
            tmp_path, cache=False, sleep=time.sleep, max_retries=2, max_wait=0.5, min_interval={"127.0.0.1": 0.3}
        ) as http,
    ):
        results: dict[str, object] = {}

        def fetch(p: str) -> None:
            try:
                results[p] = http.get(f"{url}/{p}").text
            except ServiceError as err:
                results[p] = err

        threads = [threading.Thread(target=fetch, args=(p,)) for p in "abcd"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert results == {p: "ok" for p in "abcd"}
    assert script.count() == 8


# -- secrets are redacted ------------------------------------------------------------------------
def test_key_quoted_in_an_error_body_is_redacted_everywhere(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SERPER_API_KEY", "sk-serper-secret-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret-456")
    body = "invalid key sk-serper-secret-123 (also tried sk-openai-secret-456)"
    script = Script({"/401": Reply(401, body), "/503": Reply(503, body)})
    with serve(script) as url, make_client(tmp_path, max_retries=1) as http:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(HTTPStatusError) as first:
                http.post(f"{url}/401", headers={"X-API-KEY": "sk-serper-secret-123"}, json={"q": 1})
            with pytest.raises(HTTPStatusError) as second:
                http.get(f"{url}/503", params={"api_key": "sk-openai-secret-456"})  # the key in a URL
            unchecked = http.get(f"{url}/401", check_status=False, cache=False)  # what the LLM backend reads
        cache_path = http.cache_path
    for text in (str(first.value), str(second.value), second.value.url, unchecked.text, caplog.text):
        assert "secret" not in text
    assert "[REDACTED]" in str(first.value) and "[REDACTED]" in unchecked.text
    with sqlite3.connect(cache_path) as con:
        blobs = b"".join(bytes(v) for (v,) in con.execute("SELECT value FROM responses"))
    assert b"secret" not in blobs


# -- settings --------------------------------------------------------------------------------------------------------
def test_settings_from_environment_then_defaults(monkeypatch):
    monkeypatch.setenv("PASA_SERPER_URL", "http://127.0.0.1:9/search")
    monkeypatch.setenv("PASA_AR5IV_URL", "http://mirror.local/html")
    monkeypatch.setenv("PASA_HTTP_MAX_WAIT", "15")
    monkeypatch.setenv("PASA_HTTP_RETRIES", "2")
    monkeypatch.setenv("PASA_ARXIV_INTERVAL", "0")
    config = HttpConfig(http_timeout=5.0, no_cache=True)
    assert config.serper_url == "http://127.0.0.1:9/search"
    assert config.ar5iv_url == "http://mirror.local/html/{arxiv_id}"
    assert config.arxiv_url == "https://export.arxiv.org/api/query" and config.llm_timeout == 120.0
    assert (config.http_timeout, config.max_wait, config.http_retries, config.no_cache) == (5.0, 15.0, 2, True)
    assert isinstance(config.http_retries, int)
    assert config.min_interval["export.arxiv.org"] == 0.0 and config.min_interval["mirror.local"] == 0.0
    monkeypatch.setenv("PASA_HTTP_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="PASA_HTTP_TIMEOUT"):
        HttpConfig()
    monkeypatch.delenv("PASA_HTTP_TIMEOUT")
    with pytest.raises(ValueError, match="http_retries"):
        HttpConfig(http_timeout=1.0, http_retries=-1)


def test_defaults_are_written_once_and_read_when_the_object_is_made(monkeypatch):
    monkeypatch.delenv("PASA_HTTP_TIMEOUT", raising=False)
    assert HttpConfig().http_timeout == 30.0
    monkeypatch.setenv("PASA_HTTP_TIMEOUT", "7")
    assert HttpConfig().http_timeout == 7.0  # read when made, not when the module was imported
    assert ServiceArgs is HttpConfig


def test_settings_parse_with_hf_argument_parser(monkeypatch):
    from transformers import HfArgumentParser

    monkeypatch.setenv("PASA_LLM_TIMEOUT", "45")
    parser = HfArgumentParser(HttpConfig)
    (config,) = parser.parse_args_into_dataclasses(["--serper_url", "http://x/search", "--http_max_wait", "0"])
    assert config.serper_url == "http://x/search" and config.llm_timeout == 45.0
    assert config.max_wait is None  # 0 = no cap
    (config,) = parser.parse_args_into_dataclasses(["--no_cache", "--llm_timeout", "30"])
    assert config.no_cache and config.llm_timeout == 30.0
    assert (
        "--min_interval" not in parser._option_string_actions and "--user_agent" not in parser._option_string_actions
    )
