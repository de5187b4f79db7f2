"""Input checks: one line naming the problem and what to do, before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pasa.checks import (
    CheckError,
    check_agent_knobs,
    check_end_date,
    check_index_dir,
    check_input_file,
    check_jsonl_file,
    check_model_path,
    check_model_server,
    check_output_dir,
    check_selector_endpoint,
    exit_with,
    looks_like_path,
    resolve_model,
)


def make_checkpoint(folder, weights=True, tokenizer=True, config="{}"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config)
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return str(folder)


def test_model_path_accepts_a_checkpoint_url_and_hub_id(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    assert check_model_path(ckpt) == ckpt
    assert check_model_path("http://localhost:8000/v1#m", allow_url=True) == "http://localhost:8000/v1#m"
    assert check_model_path("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        (
            "checkpoints/pasa-7b-crawler",
            {},
            "checkpoint not found: checkpoints/pasa-7b-crawler (--crawler_path); run `pasa download`",
        ),
        ("{tmp}/missing", {}, "checkpoint not found: {tmp}/missing"),
        ("./nope", {}, "checkpoint not found: ./nope"),
        ("Qwen/Qwen2.5-7B-Instruct", {"allow_hub_id": False}, "checkpoint not found: Qwen/Qwen2.5-7B-Instruct"),
        ("ftp://host/model", {"allow_url": True}, "ftp:// is not supported; pass an http(s)://"),
        ("http://host/v1", {}, "http:// is not supported; pass a local checkpoint folder"),
        ("{tmp}/file.bin", {}, "is a file; pass the checkpoint folder"),
        ("{tmp}/empty", {}, "is not a model checkpoint: no config.json; run `pasa download`"),
        ("{tmp}/run", {}, "no config.json (it holds checkpoint-* folders: pass one of them)"),
        ("{tmp}/noweights", {}, "has no weights"),
        ("{tmp}/notok", {}, "has no tokenizer files"),
        ("{tmp}/badconfig", {}, "config.json cannot be read"),
        ("", {}, "--crawler_path is required"),
    ],
)
def test_model_path_errors_are_one_line(tmp_path, spec, kwargs, message):
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "run" / "checkpoint-10").mkdir(parents=True)
    make_checkpoint(tmp_path / "noweights", weights=False)
    make_checkpoint(tmp_path / "notok", tokenizer=False)
    make_checkpoint(tmp_path / "badconfig", config="{trunc")
    with pytest.raises(CheckError) as err:
        check_model_path(spec.format(tmp=tmp_path), "--crawler_path", **kwargs)
    assert message.format(tmp=tmp_path) in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_missing_checkpoint_never_reaches_the_hub(tmp_path, monkeypatch):
    """The released failure: a missing local folder went to huggingface.co for ~49 s. Nothing is imported or
    fetched now: the check fails first (HF_HUB_OFFLINE is not needed)."""
    calls = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckError, match="checkpoint not found"):
        check_model_path("checkpoints/pasa-7b-selector", "--selector_path", allow_url=True)
    assert calls == []


def test_looks_like_path():
    assert looks_like_path("checkpoints/x") and looks_like_path("a/b/c") and looks_like_path("x")
    assert not looks_like_path("bytedance-research/pasa-7b-crawler")


def test_files_and_folders(tmp_path):
    with pytest.raises(CheckError, match="is a folder; pass a .jsonl file"):
        check_input_file(str(tmp_path))
    with pytest.raises(CheckError, match="does not exist"):
        check_input_file(str(tmp_path / "q.jsonl"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckError, match="is a file; pass a folder"):
        check_output_dir(str(tmp_path / "f"))
    with pytest.raises(CheckError, match="is not writable"):
        check_output_dir(str(tmp_path / "f" / "sub"))
    assert check_output_dir(str(tmp_path / "new" / "out")) and os.listdir(tmp_path / "new" / "out") == []
    with pytest.raises(CheckError, match="build it with `pasa index"):
        check_index_dir(str(tmp_path / "idx"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(CheckError, match="is not writable"):
        check_output_dir(str(ro))


def test_read_only_filesystem():
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    with pytest.raises(CheckError, match="is not writable"):
        check_output_dir("/proc/self/pasa-results")


@pytest.mark.parametrize(
    "knob, value, message",
    [
        ("expand_layers", -3, "--expand_layers must be between 0 and 20, got -3"),
        ("search_papers", -5, "--search_papers must be between 1 and 100, got -5"),
        ("expand_layers", 1_000_000_000, "--expand_layers must be between 0 and 20, got 1000000000"),
        ("threads_num", 0, "--threads_num must be between 1"),
    ],
)
def test_agent_knobs_are_bounded(knob, value, message):
    from pasa.agent import AgentConfig

    config = AgentConfig()
    check_agent_knobs(config)
    setattr(config, knob, value)
    with pytest.raises(CheckError, match=message):
        check_agent_knobs(config)


def test_selector_endpoint_and_end_date():
    assert check_selector_endpoint("chat") == "chat"
    with pytest.raises(CheckError, match="--selector_endpoint must be one of completions, chat, not 'chatty'"):
        check_selector_endpoint("chatty")
    assert check_end_date("20240131") == "20240131"
    for bad in ("2024-01-31", "20241345"):
        with pytest.raises(CheckError, match="--end_date"):
            check_end_date(bad)


def test_exit_with_prints_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        exit_with(CheckError("checkpoint not found: x; run `pasa download`"), "pasa run")
    assert exc.value.code == 2
    assert capsys.readouterr().err == "pasa run: error: checkpoint not found: x; run `pasa download`\n"


class _Models(BaseHTTPRequestHandler):
    status = 200
    body = {"data": [{"id": "pasa-7b-crawler"}]}

    def do_GET(self):  # noqa: N802
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(self.body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def model_server():
    server = HTTPServer(("127.0.0.1", 0), _Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", server
    server.shutdown()


def test_model_server_checked_once(model_server):
    url, server = model_server
    check_model_server(url)
    check_model_server(url + "#pasa-7b-crawler")
    with pytest.raises(CheckError, match="does not serve 'other'; it serves pasa-7b-crawler") as err:
        check_model_server(url + "#other")
    assert err.value.exit_code == 2
    server.RequestHandlerClass = type("Denied", (_Models,), {"status": 401})
    with pytest.raises(CheckError, match="HTTP 401"):
        check_model_server(url)


def test_unreachable_model_server_is_one_line():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        CheckError, match=f"cannot reach the model server of --selector_path at http://127.0.0.1:{port}/v1"
    ) as err:
        check_model_server(f"http://127.0.0.1:{port}/v1", "--selector_path", timeout=2)
    assert err.value.exit_code == 1


# -- query files ------------------------------------------------------------------------------------------------
def test_query_file_must_be_jsonl_and_not_empty(tmp_path):
    csv = tmp_path / "q.csv"
    csv.write_text("question,answer\nwhat is RAG,T1\n")
    with pytest.raises(CheckError) as err:
        check_jsonl_file(str(csv))
    assert (
        "is not JSONL" in str(err.value) and "JSONL expected" in str(err.value) and "question,answer" in str(err.value)
    )
    assert "\n" not in str(err.value)
    for content in ("", "\n  \n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(content)
        with pytest.raises(CheckError, match="is empty; write one JSON object per line"):
            check_jsonl_file(str(empty))
    good = tmp_path / "q.jsonl"
    good.write_bytes(b'\xef\xbb\xbf\n{"question": "q"}\n')  # a byte-order mark and a blank line first
    assert check_jsonl_file(str(good)) == str(good)


# -- Hugging Face names -----------------------------------------------------------------------------------------
def test_hub_name_not_downloaded_is_one_line_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the check went to the network")

    monkeypatch.setattr("socket.socket.connect", no_network)
    with pytest.raises(CheckError) as err:
        resolve_model("Qwen/Qwen2.5-7B-Instruct", "--crawler_path", cache_dir=str(tmp_path / "hub"))
    message = str(err.value)
    assert message.startswith("--crawler_path 'Qwen/Qwen2.5-7B-Instruct' is not a local folder")
    assert "huggingface-cli download Qwen/Qwen2.5-7B-Instruct" in message and err.value.exit_code == 2


def test_hub_name_in_the_local_cache_resolves_to_its_folder(tmp_path):
    repo = tmp_path / "hub" / "models--org--tiny"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = make_checkpoint(repo / "snapshots" / revision)
    assert resolve_model("org/tiny", "--selector_path", cache_dir=str(tmp_path / "hub")) == snapshot
    assert resolve_model("http://host:8000/v1#m") == "http://host:8000/v1#m"
    with pytest.raises(CheckError, match="checkpoint not found: checkpoints/x"):
        resolve_model("checkpoints/x")


def test_gguf_file_is_checked_in_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "smollm2"
    folder.mkdir()
    (folder / "other.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(CheckError) as err:
        resolve_model(str(folder), "--crawler_path", gguf_file="model.Q4_1.gguf")
    assert "holds no 'model.Q4_1.gguf'" in str(err.value) and "other.Q8_0.gguf" in str(err.value)
    with pytest.raises(CheckError, match="give the file's name inside the --crawler_path folder"):
        resolve_model(str(folder), "--crawler_path", gguf_file=str(folder / "other.Q8_0.gguf"))
    # a folder with only the GGUF file is a model (no config.json / tokenizer files needed)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "gguf" else real_find_spec(name, *a)
    )
    assert resolve_model(str(folder), "--crawler_path", gguf_file="other.Q8_0.gguf") == str(folder)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(CheckError, match="needs the `gguf` package: pip install gguf"):
        resolve_model(str(folder), "--crawler_path", gguf_file="other.Q8_0.gguf")
    # without --gguf_file the folder is not a checkpoint
    with pytest.raises(CheckError, match="no config.json"):
        resolve_model(str(folder), "--crawler_path")
