"""A real ``pasa serve --demo`` on a free loopback port: the API end to end, a restart, and the start-up checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.pasa.serve.helpers import wait_for

REPO = Path(__file__).resolve().parents[3]
QUERY = "Give me papers about retrieval-augmented generation for language models"
START_TIMEOUT_S = 180  # imports torch and builds the tiny selector; the machine may be busy


class ServeProcess:
    """``pasa serve --demo --port 0`` in a subprocess; ``url`` is read from its first line."""

    def __init__(self, output_dir: Path, *extra: str):
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("PASA_API_KEY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pasa.cli",
                "serve",
                "--demo",
                "--port",
                "0",
                "--output_dir",
                str(output_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=output_dir.parent,
        )
        self.lines: list[str] = []
        self.url = self._read_url()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_url(self) -> str:
        found: list[str] = []

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                if line.startswith("PaSa serving on "):
                    found.append(line.split()[3].rstrip("/"))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not found:
            self.kill()
            pytest.fail("pasa serve did not start:\n" + "".join(self.lines[-30:]))
        return found[0]

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """Ctrl-C: a clean shutdown."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(60) == 0
        assert "Traceback" not in "".join(self.lines)


def wait_done(client: httpx.Client, search_id: str) -> dict:
    def finished():
        body = client.get(f"/api/search/{search_id}").json()
        return body if body["status"] in ("done", "failed") else None

    return wait_for(finished, 120, 0.1, f"search {search_id}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "out"
    proc = ServeProcess(out)
    with httpx.Client(base_url=proc.url, timeout=30) as client:
        yield proc, client, out
    proc.stop()


def test_demo_server_answers_the_api(server):
    proc, client, out = server
    assert proc.url.startswith("http://127.0.0.1:")
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["demo"] is True

    created = client.post("/api/search", json={"query": QUERY})
    assert created.status_code == 202 and created.json()["status"] == "queued"
    search_id = created.json()["id"]
    body = wait_done(client, search_id)
    assert body["status"] == "done" and body["papers"]
    assert body["progress"]["search"]["queries"] == 3
    assert (out / f"{search_id}.json").exists()

    with client.stream("GET", f"/api/search/{search_id}/events") as events:
        text = "".join(events.iter_text())
    assert "event: status" in text and '"status": "done"' in text

    tree = client.get(f"/api/search/{search_id}/export?format=json").json()
    assert tree["title"] == QUERY
    bib = client.get(f"/api/search/{search_id}/export?format=bib")
    assert bib.status_code == 200 and bib.text.startswith(("@misc", "%"))
    table = client.get(f"/api/search/{search_id}/export?format=csv").text.splitlines()
    assert len(table) == 1 + len(body["papers"])

    listed = client.get("/api/searches").json()["searches"]
    assert search_id in [s["id"] for s in listed]


def test_demo_server_refuses_bad_input_and_unknown_ids(server):
    _, client, _ = server
    for body, status in (({"query": " "}, 400), ({"query": "x" * 2001}, 400), ({"query": "rag", "k": 1}, 400)):
        response = client.post("/api/search", json=body)
        assert response.status_code == status and "\n" not in response.json()["error"]
    response = client.post("/api/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert client.get("/api/search/99999").status_code == 404
    assert client.get("/api/search/99999/export?format=csv").json() == {"error": "no search with id '99999'"}


def test_demo_server_takes_concurrent_submissions(server):
    _, client, _ = server
    queries = [f"{QUERY} ({n})" for n in range(4)]
    responses = {}

    def post(q):
        with httpx.Client(base_url=client.base_url, timeout=30) as own:
            responses[q] = own.post("/api/search", json={"query": q})

    threads = [threading.Thread(target=post, args=(q,)) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 202 for r in responses.values())
    ids = {q: r.json()["id"] for q, r in responses.items()}
    assert len(set(ids.values())) == 4
    for q, search_id in ids.items():
        body = wait_done(client, search_id)
        assert body["status"] == "done" and body["query"] == q


def test_restart_keeps_finished_searches_and_runs_the_rest(tmp_path):
    from pasa.io import this_host, write_json_atomic

    out = tmp_path / "out"
    first = ServeProcess(out)
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            done_id = client.post("/api/search", json={"query": QUERY}).json()["id"]
            done = wait_done(client, done_id)
    finally:
        first.kill()
    tree_before = (out / f"{done_id}.json").read_bytes()
    # what a crash mid-search leaves: a running search with the lock of a process that is gone, a queued one
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    records = {"7": ("running", "RAG survey"), "8": ("queued", "dense retrieval for question answering")}
    for search_id, (status, query) in records.items():
        write_json_atomic(
            str(out / "searches" / f"{search_id}.json"), {"id": search_id, "query": query, "status": status}
        )
    (out / "7.json.lock").write_text(json.dumps({"pid": dead.pid, "host": this_host(), "time": 0}))

    second = ServeProcess(out)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            again = client.get(f"/api/search/{done_id}").json()
            assert again["status"] == "done" and again["papers"] == done["papers"]
            for search_id, (_, query) in records.items():
                body = wait_done(client, search_id)
                assert body["status"] == "done" and body["query"] == query and body["papers"]
            assert client.post("/api/search", json={"query": QUERY}).json()["id"] == "9"
    finally:
        second.stop()
    assert (out / f"{done_id}.json").read_bytes() == tree_before  # served from disk, not run again
    assert not (out / "7.json.lock").exists()
    statuses = {p.stem: json.loads(p.read_text())["status"] for p in (out / "searches").iterdir()}
    assert sorted(statuses) == sorted([done_id, "7", "8", "9"])
    assert statuses[done_id] == statuses["7"] == statuses["8"] == "done"


def test_non_loopback_host_without_api_key_refuses_to_start(tmp_path, monkeypatch, capsys):
    from pasa.serve.server import main

    monkeypatch.delenv("PASA_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--demo", "--host", "0.0.0.0", "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--host 0.0.0.0" in err and "PASA_API_KEY" in err


@pytest.mark.parametrize("key_from", ["env", "flag"])
def test_non_loopback_host_is_accepted_with_an_api_key(tmp_path, monkeypatch, key_from):
    from pasa.agent import AgentConfig
    from pasa.serve.server import check_serve_args, parse_args

    argv = ["--demo", "--host", "0.0.0.0", "--output_dir", str(tmp_path / "out")]
    monkeypatch.delenv("PASA_API_KEY", raising=False)
    if key_from == "flag":
        argv += ["--api_key", "s3cret"]
    else:
        monkeypatch.setenv("PASA_API_KEY", "s3cret")
    args, config, _ = parse_args(argv)
    key = args.api_key or os.environ.get("PASA_API_KEY")
    check_serve_args(args, config, key)  # no error: the server would bind, with every API call needing the key
    assert isinstance(config, AgentConfig) and key == "s3cret"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--query", "rag"], "--query is a `pasa run` flag"),
        (["--seed_papers", "2005.11401"], "--seed_papers is a `pasa run` flag"),
        (["--search_engine", "bing"], "--search_engine must be one of"),
        (["--max_concurrent_searches", "0"], "--max_concurrent_searches"),
        (["--port", "70000"], "--port"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, argv, words):
    from pasa.serve.server import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--demo", "--port", "0", "--output_dir", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_a_port_in_use_is_one_line():
    from pasa.checks import CheckError
    from pasa.serve.server import bind_socket

    taken = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(CheckError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*pick another --port"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_pasa_run_flags_build_the_served_agent(tiny_artifacts, monkeypatch, tmp_path):
    """Without --demo, the models and the paper source come from `pasa run`'s flags (here the `pasa tiny` layout:
    tiny checkpoints at the default paths, the paper database at its default place, the offline index)."""
    from fastapi.testclient import TestClient

    from pasa.serve.app import create_app
    from pasa.serve.jobs import SearchQueue
    from pasa.serve.server import check_serve_args, load_agent, parse_args

    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    argv = ["--search_index", "data/paper_database/search_index", "--expand_layers", "1", "--device", "cpu"]
    args, config, http = parse_args([*argv, "--output_dir", str(tmp_path / "out")])
    check_serve_args(args, config, None)
    agent = load_agent(args, config, http)
    assert config.expand_layers == 1 and agent.config.expand_layers == 1
    with TestClient(create_app(SearchQueue(agent, args.output_dir), None, {"demo": False})) as client:
        search_id = client.post("/api/search", json={"query": "graph neural networks"}).json()["id"]
        body = wait_for(
            lambda: (b := client.get(f"/api/search/{search_id}").json())["status"] in ("done", "failed") and b,
            300,
            0.1,
            "the search",
        )
    assert body["status"] == "done", body.get("error")
    assert body["progress"]["search"]["search"] >= 1 and body["papers"]
    assert (tmp_path / "out" / f"{search_id}.json").exists()
