"""The JSON API of ``pasa serve`` through FastAPI's test client, over the demo agent with a scripted selector."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest

from pasa.paper import loads_tree
from tests.pasa.serve.helpers import scripted_agent, wait_finished, wait_for

QUERY = "Give me papers about retrieval-augmented generation for language models"


def submit(client, body, headers=None):
    return client.post("/api/search", json=body, headers=headers)


def test_health_answers_ok(make_client):
    body = make_client().get("/api/health").json()
    assert body["status"] == "ok" and body["demo"] is True
    assert body["max_concurrent_searches"] == 1


def test_search_runs_and_returns_ranked_papers(make_client, tmp_path):
    client = make_client()
    response = submit(client, {"query": QUERY})
    assert response.status_code == 202
    created = response.json()
    assert created["status"] == "queued" and created["id"]

    body = wait_finished(client, created["id"])
    assert body["status"] == "done" and body["query"] == QUERY and body["degraded"] is False
    papers = body["papers"]
    assert papers, "the demo search finds papers"
    scores = [p["score"] for p in papers]
    assert scores == sorted(scores, reverse=True)
    assert {p["title"] for p in papers if p["selected"]} <= {
        p["title"] for p in papers if any(w in p["title"] for w in ("Retrieval", "REALM", "Dense Passage"))
    }
    assert any(p["selected"] for p in papers)
    assert all(set(p) == {"arxiv_id", "title", "abstract", "score", "selected", "depth", "found_by"} for p in papers)
    by_search = [p for p in papers if p["depth"] == 0]
    by_citation = [p for p in papers if p["depth"] > 0]
    assert by_search and all(" > " not in p["found_by"] for p in by_search)
    assert by_citation and all(" > " in p["found_by"] for p in by_citation)
    # the stage counts as `pasa run --query` shows them
    assert body["progress"]["search"]["queries"] == 3
    assert body["progress"]["search"]["scored"] == len(by_search)
    # the tree is on disk in the `pasa run` layout
    tree = loads_tree((tmp_path / "out" / f"{created['id']}.json").read_text())
    assert tree.title == QUERY
    assert {n.arxiv_id for n in tree.iter_nodes()} == {p["arxiv_id"] for p in papers}


def test_seed_papers_join_the_search_at_depth_0(make_client):
    client = make_client()
    body = {"query": QUERY, "seed_papers": ["arXiv:1609.02907v4"], "end_date": "20240101"}
    search_id = submit(client, body).json()["id"]
    result = wait_finished(client, search_id)
    assert result["seed_papers"] == ["1609.02907"] and result["end_date"] == "20240101"
    seeds = [p for p in result["papers"] if p["found_by"] == "[Seed]"]
    assert [(p["arxiv_id"], p["depth"]) for p in seeds] == [("1609.02907", 0)]
    tree = client.get(f"/api/search/{search_id}/export?format=json").json()
    assert [c["arxiv_id"] for c in tree["child"]["[Seed]"]] == ["1609.02907"]


def test_events_stream_ends_with_the_final_status(make_client):
    client = make_client()
    search_id = submit(client, {"query": QUERY}).json()["id"]
    with client.stream("GET", f"/api/search/{search_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    assert events[-1][0] == "status"
    assert events[-1][1]["status"] == "done"
    assert events[-1][1]["progress"]["search"]["queries"] == 3
    assert all(kind == "progress" for kind, _ in events[:-1])


def test_exports(make_client):
    client = make_client()
    search_id = submit(client, {"query": QUERY}).json()["id"]
    papers = wait_finished(client, search_id)["papers"]

    tree = client.get(f"/api/search/{search_id}/export?format=json")
    assert tree.status_code == 200 and tree.json()["title"] == QUERY

    bib = client.get(f"/api/search/{search_id}/export", params={"format": "bib"})
    assert bib.status_code == 200
    selected = [p for p in papers if p["selected"]]
    assert bib.text.count("@misc{") == len(selected) > 0
    for p in selected:
        assert f"eprint = {{{p['arxiv_id']}}}" in bib.text
    assert "archivePrefix = {arXiv}" in bib.text

    table = client.get(f"/api/search/{search_id}/export?format=csv")
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["arxiv_id"] for r in rows] == [p["arxiv_id"] for p in papers]

    bad = client.get(f"/api/search/{search_id}/export?format=pdf")
    assert bad.status_code == 400 and "json, bib, csv" in bad.json()["error"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"query": ""}, "empty"),
        ({"query": "   \n"}, "empty"),
        ({"query": "x" * 2001}, "2001 characters"),
        ({"query": 3}, "must be a string"),
        ({}, "must be a string"),
        (["a list"], "JSON object"),
        ({"query": "rag", "end_date": "2024-01-01"}, "YYYYMMDD"),
        ({"query": "rag", "end_date": 20240101}, "YYYYMMDD"),
        ({"query": "rag", "end_date": "20241301"}, "YYYYMMDD"),
        ({"query": "rag", "seed_papers": "2005.11401"}, "list of arXiv ids"),
        ({"query": "rag", "seed_papers": ["not an id"]}, "not an arXiv id"),
        ({"query": "rag", "max_papers": 3}, "unknown field 'max_papers'"),
    ],
)
def test_bad_input_is_400_with_one_line(make_client, body, words):
    response = submit(make_client(), body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in error and "\n" not in error


def test_body_that_is_not_json_is_400(make_client):
    response = make_client().post("/api/search", content=b"query=rag", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_body_over_the_size_limit_is_400(make_client):
    response = make_client().post("/api/search", json={"query": "rag", "seed_papers": ["2005.11401"] * 10_000})
    assert response.status_code == 400 and "KiB" in response.json()["error"]


def test_unknown_id_is_404(make_client):
    client = make_client()
    for path in ("/api/search/41", "/api/search/41/events", "/api/search/41/export?format=csv"):
        response = client.get(path)
        assert response.status_code == 404 and response.json() == {"error": "no search with id '41'"}


def test_export_of_an_unfinished_search_is_409(make_client):
    release = threading.Event()

    def held(agent, item, output_dir, on_counts):
        release.wait(10)
        raise RuntimeError("stopped")

    client = make_client(run_search=held)
    search_id = submit(client, {"query": QUERY}).json()["id"]
    response = client.get(f"/api/search/{search_id}/export?format=bib")
    release.set()
    assert response.status_code == 409 and "once it is done" in response.json()["error"]


def test_full_queue_is_429(make_client):
    release = threading.Event()

    def held(agent, item, output_dir, on_counts):
        release.wait(10)
        raise RuntimeError("stopped")

    client = make_client(run_search=held, max_queued=2)
    first = submit(client, {"query": "one"}).json()["id"]
    wait_for(lambda: client.get(f"/api/search/{first}").json()["status"] == "running", what="the first to run")
    assert submit(client, {"query": "two"}).status_code == 202
    assert submit(client, {"query": "three"}).status_code == 202
    response = submit(client, {"query": "four"})
    release.set()
    assert response.status_code == 429 and "queue is full" in response.json()["error"]


def test_a_failing_search_is_marked_failed_and_the_server_goes_on(make_client, caplog):
    from pasa.crawler import Crawler
    from pasa.llm.scripted import ScriptedLLM

    def unreachable(prompt):
        raise ConnectionError("crawler server unreachable")

    agent = scripted_agent()
    good_crawler, agent.crawler = agent.crawler, Crawler(ScriptedLLM(reply_fn=unreachable))
    client = make_client(agent=agent)
    failed_id = submit(client, {"query": QUERY}).json()["id"]
    body = wait_finished(client, failed_id)
    assert body["status"] == "failed"
    assert body["error"] == "ConnectionError: crawler server unreachable"
    assert client.get(f"/api/search/{failed_id}/export?format=csv").status_code == 409
    failed_lines = [r for r in caplog.records if "failed" in r.getMessage() and r.levelname == "ERROR"]
    assert len(failed_lines) == 1

    agent.crawler = good_crawler
    ok_id = submit(client, {"query": QUERY}).json()["id"]
    assert wait_finished(client, ok_id)["status"] == "done"
    statuses = {s["id"]: s["status"] for s in client.get("/api/searches").json()["searches"]}
    assert statuses == {failed_id: "failed", ok_id: "done"}


def test_degraded_search_is_marked(make_client):
    agent = scripted_agent()
    inner = agent.source

    class FlakySearch:
        def __getattr__(self, name):
            return getattr(inner, name)

        def search(self, query, *args, **kwargs):
            if " " not in query.strip() or len(query.split()) > 4:
                raise ConnectionError("search service down")
            return inner.search(query, *args, **kwargs)

    agent.source = FlakySearch()
    client = make_client(agent=agent)
    body = wait_finished(client, submit(client, {"query": QUERY}).json()["id"])
    assert body["status"] == "done" and body["degraded"] is True
    assert body["failures"]["search"] >= 1
    summary = client.get("/api/searches").json()["searches"][0]
    assert summary["degraded"] is True


def test_concurrent_submissions_run_at_most_n_at_once(make_client):
    lock, running, peak = threading.Lock(), [0], [0]
    from pasa.serve.jobs import default_run_search

    def counted(agent, item, output_dir, on_counts):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            threading.Event().wait(0.2)
            return default_run_search(agent, item, output_dir, on_counts)
        finally:
            with lock:
                running[0] -= 1

    client = make_client(run_search=counted, max_concurrent=2)
    results = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(submit(client, {"query": f"{QUERY} {n}"})))
        for n in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r.json()["id"] for r in results]
    assert all(r.status_code == 202 for r in results) and len(set(ids)) == 5
    bodies = [wait_finished(client, i) for i in ids]
    assert all(b["status"] == "done" for b in bodies)
    assert {b["query"] for b in bodies} == {f"{QUERY} {n}" for n in range(5)}
    assert peak[0] == 2


def test_restart_serves_finished_searches_and_requeues_the_others(make_client, tmp_path):
    release = threading.Event()

    def held(agent, item, output_dir, on_counts):
        release.wait(10)
        raise RuntimeError("the server stopped")

    out = tmp_path / "shared"
    first = make_client(output_dir=out)
    done_id = submit(first, {"query": QUERY}).json()["id"]
    done = wait_finished(first, done_id)
    first.__exit__(None, None, None)

    second = make_client(output_dir=out, run_search=held)
    assert second.get(f"/api/search/{done_id}").json()["papers"] == done["papers"]
    running_id = submit(second, {"query": "RAG survey"}).json()["id"]
    queued_id = submit(second, {"query": "dense retrieval"}).json()["id"]
    wait_for(lambda: second.get(f"/api/search/{running_id}").json()["status"] == "running", what="a running search")
    # a crash: the records say running / queued (the process is gone, nothing is written any more)
    records = {i: json.loads((out / "searches" / f"{i}.json").read_text())["status"] for i in (running_id, queued_id)}
    assert records == {running_id: "running", queued_id: "queued"}

    third = make_client(output_dir=out)
    assert third.get(f"/api/search/{done_id}").json()["status"] == "done"
    release.set()
    for search_id in (running_id, queued_id):
        assert wait_finished(third, search_id)["status"] == "done"
    assert len({done_id, running_id, queued_id}) == 3
    listed = third.get("/api/searches").json()["searches"]
    assert sorted(s["id"] for s in listed) == sorted([done_id, running_id, queued_id])


def test_a_search_locked_by_another_run_waits_for_it(make_client, tmp_path):
    from pasa.io import ItemLock, write_json_atomic

    out = tmp_path / "out"
    (out / "searches").mkdir(parents=True)
    write_json_atomic(str(out / "searches" / "0.json"), {"id": "0", "query": QUERY, "status": "running"})
    lock = ItemLock(str(out / "0.json"))  # another process sharing the folder is running search 0
    assert lock.acquire()
    try:
        client = make_client(output_dir=out, locked_retry_s=0.05)
        threading.Event().wait(0.5)
        body = client.get("/api/search/0").json()
        assert body["status"] == "queued" and not (out / "0.json").exists()
    finally:
        lock.release()
    assert wait_finished(client, "0")["status"] == "done"


def test_new_searches_never_take_an_index_in_use(make_client, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "4.json").write_text(json.dumps({"title": "a `pasa run` result", "child": {}}))
    client = make_client(output_dir=out)
    ids = [submit(client, {"query": f"{QUERY} {n}"}).json()["id"] for n in range(2)]
    assert ids == ["5", "6"]
    assert json.loads((out / "4.json").read_text())["title"] == "a `pasa run` result"


def test_api_key_is_required_on_every_api_call(make_client):
    client = make_client(api_key="s3cret")
    assert client.get("/api/health").status_code == 401
    assert submit(client, {"query": QUERY}).status_code == 401
    wrong = client.get("/api/searches", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    auth = {"Authorization": "Bearer s3cret"}
    search_id = submit(client, {"query": QUERY}, headers=auth).json()["id"]
    assert wait_finished(client, search_id, headers=auth)["status"] == "done"
    assert client.get(f"/api/search/{search_id}/export?format=csv").status_code == 401
    assert client.get("/").status_code == 200  # the page itself asks for the key


def test_a_search_the_stopping_server_breaks_is_queued_again_not_failed(tmp_path):
    from pasa.serve.jobs import SearchQueue, SearchRequest

    started, release = threading.Event(), threading.Event()

    def broken_by_shutdown(agent, item, output_dir, on_counts):
        started.set()
        release.wait(10)
        raise RuntimeError("cannot schedule new futures after shutdown")

    queue = SearchQueue(scripted_agent(), str(tmp_path / "out"), run_search=broken_by_shutdown)
    queue.start()
    search = queue.submit(SearchRequest(QUERY))
    assert started.wait(10)
    queue.close(timeout=0.1)  # the server stops while the search runs
    release.set()
    wait_for(lambda: queue.get(search.id).status == "queued", 10, what="the search to be queued again")
    record = json.loads((tmp_path / "out" / "searches" / f"{search.id}.json").read_text())
    assert record["status"] == "queued" and record["error"] is None

    restarted = SearchQueue(scripted_agent(), str(tmp_path / "out"))
    restarted.start()
    try:
        wait_for(lambda: restarted.get(search.id).status == "done", 30, what="the search to run after the restart")
    finally:
        restarted.close(10)
