"""Fault-injection benchmark of the tools layer: no silent loss, no bad answer replayed from the cache.

Fake Serper, arXiv API, ar5iv and OpenAI-compatible (crawler + selector) servers run on 127.0.0.1 over a synthetic
world of papers. With faults on, each request may be answered (seeded, per request key and occurrence, so thread
order does not change which request fails) with 429 (no Retry-After, ``Retry-After: 0`` or ``Retry-After: 3600``),
500, 503, a hang past the client's timeout, a body cut short of its Content-Length, a garbled JSON/XML/HTML body,
an empty 200 or an HTML error page with 200; the crawler sometimes replies garbage (200, no action).

Steps, each a real ``pasa run`` subprocess over the same 50-query batch
(``--search_queries 3 --search_papers 4 --expand_layers 2 --expand_papers 3 --threads_num 8``):

1. the fault-free reference run (its own cache);
2. the fault run (a fresh cache): crashes, finished, degraded, failed-and-logged, unlogged skips, lost, and the
   bad answers left in the cache (``replayed-bad-cache``: every fault body carries an ``X-Fault`` header, so the
   cache file is scanned for them);
3. faults off, same output folder and cache, ``pasa run --redo_degraded`` until every result equals the reference
   (at most ``--max_redo`` rounds).

Definitions: *crashes* = runs that exited with a traceback or a status other than 0/1; *finished* = results on
disk; *degraded* = results that record failures (``pasa.paper.is_degraded``); *failed-and-logged* = failed tool
calls and queries with their WARNING/ERROR line; *unlogged skips* = recorded failures without a warning line, per
query; *lost* = queries neither on disk nor logged as failed, plus results that differ from the reference and are
not marked degraded (silent loss).

Usage::

    python bench/faults.py                      # 50 queries, seed 0; prints one line (and the redo rounds)
    python bench/faults.py --queries 10 --fault_rate 0.3 --keep /tmp/faults   # keep folders and logs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pasa.paper import is_degraded, title_key  # noqa: E402

WORLD = 600  # papers on the fake arXiv
A = "sparse dense robust neural graph causal latent adaptive modular hybrid".split()
B = "retrieval attention transport memory reasoning diffusion planning alignment search parsing".split()
C = "models networks agents kernels policies encoders decoders operators embeddings estimators".split()
D = "language vision speech robots molecules tables code proofs maps music".split()
SECTIONS = ["1 Introduction", "2 Related Work", "3 Method"]
HANG_SECONDS = 2.5  # a hang outlasts the client's read timeout (1 s) but stays bounded
HTTP_FAULTS = [
    "429",
    "429-retry-0",
    "429-retry-3600",
    "500",
    "503",
    "hang",
    "truncate",
    "garbled",
    "empty",
    "error-page",
]
LLM_FAULTS = ["503", "429", "hang", "garbled-json"]
TOOL_WARNING_RE = re.compile(r"paper source \w+\(.*\) failed|crawler reply with no action")
BENCH_KEY = "bench-serper-key-0000"  # must never show up in a log, a result or the cache
QUERY_END_RE = re.compile(r"query (\d+)(?:: degraded result| failed)")


# -- the synthetic world ----------------------------------------------------------------------------------------------
def stable_hash(*parts) -> int:
    return int.from_bytes(hashlib.sha1(json.dumps(parts).encode()).digest()[:8], "big")


def paper_id(i: int) -> str:
    return f"2301.{i:05d}"


def paper_title(i: int) -> str:
    return f"{A[i % 10].title()} {B[i // 10 % 10]} {C[i // 100 % 10]} for {D[(i * 7) % 10]}"


def paper_abstract(i: int) -> str:
    return f"We study {paper_title(i).lower()} with {A[(i * 3) % 10]} {B[(i * 7) % 10]} and report results."


def cited(i: int, s: int) -> list[str]:
    """Two world papers and one title arXiv does not know."""
    known = [paper_title((i * 7 + s * 13 + j * 31 + 1) % WORLD) for j in range(2)]
    return known + [f"Unpublished note on {A[(i + s) % 10]} {D[(i * s) % 10]} {C[s]}"]


BY_KEY = {title_key(paper_title(i)): i for i in range(WORLD)}
assert len(BY_KEY) == WORLD, "titles must be unique after title_key"


def atom_feed(indices: list[int]) -> str:
    entries = "".join(
        f"<entry><id>http://arxiv.org/abs/{paper_id(i)}v1</id><updated>2023-02-01T00:00:00Z</updated>"
        f"<published>2023-01-{i % 28 + 1:02d}T00:00:00Z</published><title>{paper_title(i)}</title>"
        f"<summary>{paper_abstract(i)}</summary><author><name>A. Author</name></author>"
        f'<link href="http://arxiv.org/abs/{paper_id(i)}v1" rel="alternate" type="text/html"/></entry>'
        for i in indices
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"><title>ArXiv Query</title>'
        f"<opensearch:totalResults>{len(indices)}</opensearch:totalResults>{entries}</feed>"
    )


def ar5iv_page(i: int) -> str:
    bib, body, n = [], [], 0
    for s, name in enumerate(SECTIONS):
        refs = []
        for title in cited(i, s):
            n += 1
            refs.append(f'<a href="#bib.bib{n}" class="ltx_ref">{n}</a>')
            bib.append(
                f'<li id="bib.bib{n}" class="ltx_bibitem"><span class="ltx_bibblock">A. Author and B. Author. </span>'
                f'<span class="ltx_bibblock">{title}. </span><span class="ltx_bibblock">In Proc., 2022. </span></li>'
            )
        body.append(
            f'<section id="S{s + 1}" class="ltx_section"><h2 class="ltx_title ltx_title_section">{name}</h2>'
            f'<div class="ltx_para"><p class="ltx_p">Text citing <cite class="ltx_cite">{", ".join(refs)}</cite>.'
            "</p></div></section>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><title>{paper_title(i)}</title></head><body>'
        f'<article class="ltx_document"><h1 class="ltx_title ltx_title_document">{paper_title(i)}</h1>'
        f'<div class="ltx_abstract"><p class="ltx_p">{paper_abstract(i)}</p></div>{"".join(body)}'
        f'<section id="bib" class="ltx_bibliography"><h2 class="ltx_title ltx_title_bibliography">References</h2>'
        f'<ul class="ltx_biblist">{"".join(bib)}</ul></section></article></body></html>'
    )


def serper_answer(query: str, k: int) -> dict:
    h = stable_hash("serper", query)
    ids = [paper_id((h + j * 17) % WORLD) for j in range(k)]
    return {
        "searchParameters": {"q": query, "num": k},
        "organic": [{"title": "x", "link": f"https://arxiv.org/abs/{i}"} for i in ids],
    }


def crawler_reply(prompt: str) -> str:
    if prompt.startswith("Please generate some mutually exclusive queries"):
        user = prompt.split("User Query:", 1)[-1].strip()
        words = re.findall(r"[a-z]+", user.lower())
        qs = [" ".join(words[j : j + 3]) or "survey" for j in range(0, 9, 3)]
        return "".join(f"[Search] {q} {A[stable_hash(user, j) % 10]}\n" for j, q in enumerate(qs)) + "[StopSearch]"
    names = re.findall(r"'([^']+)'", prompt.rsplit("Sections:", 1)[-1])
    pick = [n for j, n in enumerate(names) if stable_hash(prompt, j) % 2 == 0] or names[:1]
    return "".join(f"[Expand] {n}\n" for n in pick) + "[StopExpand]"


def selector_prob(prompt: str) -> float:
    return 0.05 + 0.9 * (stable_hash("selector", prompt) % 1000) / 1000


# -- the servers ----------------------------------------------------------------------------------------------------
class Faults:
    """Seeded fault decisions per (request key, occurrence): the n-th identical request always gets the same fate."""

    def __init__(self, seed: int, rate: float, llm_rate: float, crawler_garbage: float):
        self.seed, self.rate, self.llm_rate, self.crawler_garbage = seed, rate, llm_rate, crawler_garbage
        self.on = False
        self.seen: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.lock = threading.Lock()

    def draw(self, key: str, llm: bool = False) -> str | None:
        if not self.on:
            return None
        with self.lock:
            n = self.seen[key] = self.seen.get(key, 0) + 1
        u = stable_hash(self.seed, key, n) % 10_000 / 10_000
        if u >= (self.llm_rate if llm else self.rate):
            return None
        kinds = LLM_FAULTS if llm else HTTP_FAULTS
        kind = kinds[stable_hash(self.seed, key, n, "kind") % len(kinds)]
        with self.lock:
            self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    def garbage_reply(self, prompt: str) -> bool:
        if not self.on:
            return False
        with self.lock:
            n = self.seen[f"crawler:{prompt}"] = self.seen.get(f"crawler:{prompt}", 0) + 1
        hit = stable_hash(self.seed, "garbage", prompt, n) % 10_000 / 10_000 < self.crawler_garbage
        if hit:
            with self.lock:
                self.injected["crawler-garbage"] = self.injected.get("crawler-garbage", 0) + 1
        return hit


def make_handler(faults: Faults):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status: int, body: bytes | str, ctype: str, fault: str | None = None, headers=None):
            if isinstance(body, str):
                body = body.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if fault:
                    self.send_header("X-Fault", fault)
                if fault == "truncate":
                    self.send_header("Content-Length", str(len(body) + 500))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout)
                self.close_connection = True

        def answer(self, fault: str | None, good: bytes | str, ctype: str, garbled: str):
            if fault is None:
                return self.send(200, good, ctype)
            if fault == "hang":
                time.sleep(HANG_SECONDS)
                return self.send(200, good, ctype, fault)
            if fault.startswith("429"):
                headers = {"Retry-After": fault.rsplit("-", 1)[1]} if "retry" in fault else {}
                return self.send(429, "slow down", "text/plain", fault, headers)
            if fault in ("500", "503"):
                return self.send(int(fault), "server error", "text/plain", fault)
            if fault == "truncate":
                return self.send(200, good, ctype, fault)
            if fault == "garbled":
                return self.send(200, garbled, ctype, fault)
            if fault == "empty":
                return self.send(200, b"", ctype, fault)
            return self.send(200, "<html><body>502 Bad Gateway</body></html>", "text/html", fault)

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            key = f"GET {self.path}"
            if parts.path == "/api/query":
                q = parse_qs(parts.query)
                if q.get("id_list", [""])[0]:
                    wanted = q["id_list"][0]
                    found = [i for i in [int(wanted.split(".")[1])] if paper_id(i) == wanted and i < WORLD]
                else:
                    m = re.search(r'ti:"([^"]*)"', q.get("search_query", [""])[0])
                    i = BY_KEY.get(title_key(m.group(1) if m else ""))
                    found = [] if i is None else [i]
                garbled = atom_feed(found)[:40] + "<entry><id>broken"
                return self.answer(faults.draw(key), atom_feed(found), "application/atom+xml", garbled)
            if parts.path.startswith("/html/"):
                wanted = parts.path[len("/html/") :]
                try:
                    i = int(wanted.split(".")[1])
                except (IndexError, ValueError):
                    i = WORLD
                if paper_id(i) != wanted or i >= WORLD:
                    return self.send(404, "no such page", "text/plain")
                page = ar5iv_page(i)
                return self.answer(faults.draw(key), page, "text/html", page[: len(page) // 3])
            if parts.path == "/v1/models":
                return self.send(200, json.dumps({"data": [{"id": "fake"}]}), "application/json")
            self.send(404, "not found", "text/plain")

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            payload = json.loads(raw or b"{}")
            path = urlsplit(self.path).path
            if path == "/search":
                good = json.dumps(serper_answer(payload.get("q", ""), int(payload.get("num", 10))))
                return self.answer(faults.draw(f"POST /search {raw!r}"), good, "application/json", good[:30])
            if path == "/v1/chat/completions":
                prompt = payload["messages"][0]["content"]
                fault = faults.draw(f"chat {prompt}", llm=True)
                text = "I am not sure what to do here." if faults.garbage_reply(prompt) else crawler_reply(prompt)
                good = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})
                return self.llm_answer(fault, good)
            if path == "/v1/completions":
                prompt = payload["prompt"]
                p = selector_prob(prompt)
                top = {"True": math.log(p), "False": math.log(1 - p)}
                good = json.dumps({"choices": [{"text": " True", "logprobs": {"top_logprobs": [top]}}]})
                return self.llm_answer(faults.draw(f"completions {prompt}", llm=True), good)
            self.send(404, "not found", "text/plain")

        def llm_answer(self, fault: str | None, good: str):
            if fault == "garbled-json":
                return self.send(200, good[: len(good) // 2], "application/json", fault)
            return self.answer(fault, good, "application/json", good)

    return Handler


def start_server(faults: Faults) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(faults))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- runs and measurements --------------------------------------------------------------------------------------------
def write_queries(path: str, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for q in range(n):
            words = [B[(q * 3 + j) % 10] for j in range(2)] + [C[(q * 7) % 10], D[q % 10]]
            f.write(json.dumps({"question": f"Find papers on {' '.join(words)}"}) + "\n")


def run_pasa(url: str, queries: str, out_dir: str, cache_dir: str, log_path: str, redo: bool = False) -> dict:
    cmd = [
        sys.executable, "-m", "pasa.cli", "run", "--input_file", queries, "--output_dir", out_dir,
        "--cache_dir", cache_dir, "--online", "true", "--log_level", "WARNING",
        "--crawler_path", f"{url}/v1#fake", "--selector_path", f"{url}/v1#fake",
        "--search_queries", "3", "--search_papers", "4", "--expand_layers", "2", "--expand_papers", "3",
        "--threads_num", "8", "--max_consecutive_failures", "0",
        "--serper_url", f"{url}/search", "--arxiv_url", f"{url}/api/query", "--ar5iv_url", f"{url}/html",
        "--http_timeout", "1", "--http_retries", "1", "--http_backoff", "0.01", "--http_backoff_max", "0.05",
        "--http_retry_after_max", "1", "--http_max_wait", "5", "--arxiv_interval", "0", "--llm_timeout", "2",
    ]  # fmt: skip
    if redo:
        cmd.append("--redo_degraded")
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, SERPER_API_KEY=BENCH_KEY, PYTHONPATH=path, TQDM_DISABLE="1")
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    text = open(log_path, encoding="utf-8", errors="replace").read()
    crashed = proc.returncode not in (0, 1) or "Traceback (most recent call last)" in text
    return {"returncode": proc.returncode, "wall": wall, "log": text, "crashed": crashed}


def load_trees(out_dir: str) -> dict[int, dict]:
    trees = {}
    for name in os.listdir(out_dir) if os.path.isdir(out_dir) else []:
        if re.fullmatch(r"\d+\.json", name):
            with open(os.path.join(out_dir, name), encoding="utf-8") as f:
                trees[int(name[:-5])] = json.load(f)
    return trees


def comparable(tree: dict) -> str:
    """The tree without what legitimately varies between runs (timings)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("seconds", "elapsed", "timings")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(tree), sort_keys=True)


def failure_total(tree: dict) -> int:
    failures = (tree.get("extra") or {}).get("failures") or {}
    return int(sum(v for v in failures.values() if isinstance(v, int | float)))


def logged_per_query(log: str) -> tuple[dict[int, int], set[int]]:
    """Tool-call warning lines per query (a block ends at the query's degraded/failed line), and failed queries."""
    per_query: dict[int, int] = {}
    failed: set[int] = set()
    pending = 0
    for line in log.splitlines():
        if TOOL_WARNING_RE.search(line):
            pending += 1
            continue
        m = QUERY_END_RE.search(line)
        if m:
            q = int(m.group(1))
            per_query[q] = per_query.get(q, 0) + pending
            pending = 0
            if " failed" in line and "degraded" not in line:
                failed.add(q)
    return per_query, failed


def bad_cache_entries(cache_dir: str) -> int:
    """Cached answers that carry the fake servers' ``X-Fault`` header (bad answers that a rerun would replay)."""
    import requests_cache

    path = os.path.join(cache_dir, "http_cache.sqlite")
    if not os.path.exists(path):
        return 0
    cache = requests_cache.SQLiteCache(path)
    try:
        return sum(1 for r in cache.responses.values() if r.headers.get("X-Fault"))
    finally:
        cache.close()


def key_leaks(work: str) -> int:
    """Files under ``work`` (logs, results, cache) that contain the Serper key."""
    leaks = 0
    for folder, _, files in os.walk(work):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                leaks += BENCH_KEY.encode() in f.read()
    return leaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault_rate", type=float, default=0.15, help="Share of tool requests that fail.")
    parser.add_argument("--llm_rate", type=float, default=0.003, help="Share of model-server requests that fail.")
    parser.add_argument(
        "--crawler_garbage", type=float, default=0.05, help="Share of crawler replies that are garbage."
    )
    parser.add_argument("--max_redo", type=int, default=4, help="Most --redo_degraded rounds after the fault run.")
    parser.add_argument("--keep", help="Keep the folders and logs here (default: a temporary folder, removed).")
    args = parser.parse_args(argv)

    work = args.keep or tempfile.mkdtemp(prefix="pasa-faults-")
    os.makedirs(work, exist_ok=True)
    queries = os.path.join(work, "queries.jsonl")
    write_queries(queries, args.queries)
    faults = Faults(args.seed, args.fault_rate, args.llm_rate, args.crawler_garbage)
    server, url = start_server(faults)
    t_start = time.perf_counter()
    try:
        ref_dir, out_dir = os.path.join(work, "reference"), os.path.join(work, "results")
        ref = run_pasa(url, queries, ref_dir, os.path.join(work, "cache-ref"), os.path.join(work, "reference.log"))
        reference = {q: comparable(t) for q, t in load_trees(ref_dir).items()}
        if len(reference) != args.queries or any(is_degraded(t) for t in load_trees(ref_dir).values()):
            print(f"reference run incomplete ({len(reference)}/{args.queries}); see {work}/reference.log")
            return 1

        faults.on = True
        cache = os.path.join(work, "cache")
        run = run_pasa(url, queries, out_dir, cache, os.path.join(work, "faults.log"))
        faults.on = False
        trees = load_trees(out_dir)
        per_query, failed = logged_per_query(run["log"])
        degraded = {q for q, t in trees.items() if is_degraded(t)}
        recorded = sum(failure_total(t) for t in trees.values())
        unlogged = sum(max(0, failure_total(trees[q]) - per_query.get(q, 0)) for q in degraded)
        unlogged += sum(1 for q, t in trees.items() if q not in degraded and per_query.get(q, 0))
        silent = {q for q, t in trees.items() if q not in degraded and comparable(t) != reference[q]}
        missing = set(range(args.queries)) - set(trees) - failed
        replayed_bad = bad_cache_entries(cache)
        crashes = int(run["crashed"])

        rounds, equal = 0, sum(comparable(t) == reference[q] for q, t in trees.items())
        while equal < args.queries and rounds < args.max_redo:
            rounds += 1
            redo = run_pasa(url, queries, out_dir, cache, os.path.join(work, f"redo{rounds}.log"), redo=True)
            crashes += int(redo["crashed"])
            after = load_trees(out_dir)
            equal = sum(comparable(t) == reference.get(q) for q, t in after.items())
        print(
            f"faults: crashes {crashes}, finished {len(trees)}/{args.queries}, degraded {len(degraded)}, "
            f"failed-and-logged {recorded - unlogged + len(failed)} (calls {recorded - unlogged}, queries "
            f"{len(failed)}), unlogged skips {unlogged}, lost {len(missing) + len(silent)}, "
            f"replayed-bad-cache {replayed_bad}, key leaks {key_leaks(work)}, wall {run['wall']:.1f} s (reference {ref['wall']:.1f} s); "
            f"redo rounds {rounds} -> {equal}/{args.queries} equal to the fault-free run; "
            f"injected {sum(faults.injected.values())} ({', '.join(f'{k} {v}' for k, v in sorted(faults.injected.items()))}); "
            f"total {time.perf_counter() - t_start:.0f} s"
        )
        ok = crashes == 0 and not missing and not silent and unlogged == 0 and replayed_bad == 0
        return 0 if ok and equal == args.queries else 1
    finally:
        server.shutdown()
        server.server_close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
