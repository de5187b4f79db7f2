"""`pasa download` against a loopback Hub stand-in (tests/hub_stub.py): layout, resume, errors, env vars."""

import os
import socket
import subprocess
import sys

import pytest

from pasa import download
from tests.hub_stub import HubStub

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIG = bytes(range(256)) * 4096  # 1 MiB


def _repos(dataset_prefix: str = "") -> dict:
    model = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": BIG, "tokenizer.json": b"{}"}
    data = {dataset_prefix + name: f"{name}\n".encode() for name in download.DATASET_FILES}
    data[dataset_prefix + "README.md"] = b"# card"
    return {
        ("model", "bytedance-research/pasa-7b-crawler"): dict(model),
        ("model", "bytedance-research/pasa-7b-selector"): dict(model),
        ("model", "Qwen/Qwen2.5-7B-Instruct"): dict(model),
        ("dataset", "CarlanLark/pasa-dataset"): data,
    }


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    # CI exports HF_HUB_OFFLINE=1 for every other test; these talk to 127.0.0.1 only
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _file_gets(hub: HubStub) -> list[str]:
    return [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]


def test_download_lays_out_checkpoints_and_data_where_defaults_point(tmp_path):
    with HubStub(_repos()) as hub:
        rc = download.main(["--only", "models,data", "--local_dir", str(tmp_path), "--endpoint", hub.url])
        assert rc == 0
        first = len(_file_gets(hub))
        # a second run fetches nothing again (files are checked against the Hub's etags)
        assert download.main(["--only", "models,data", "--local_dir", str(tmp_path), "--endpoint", hub.url]) == 0
        assert len(_file_gets(hub)) == first
    for ckpt in ("pasa-7b-crawler", "pasa-7b-selector"):
        assert (tmp_path / "checkpoints" / ckpt / "model.safetensors").read_bytes() == BIG
    assert not (tmp_path / "checkpoints" / "Qwen2.5-7B-Instruct").exists()  # not asked for
    for name, (local, _) in download.DATASET_FILES.items():
        assert (tmp_path / "data" / local).read_text() == f"{name}\n"
    assert first == 2 * 3 + len(download.DATASET_FILES)  # the dataset card was not fetched


def test_only_one_data_part_and_base(tmp_path):
    with HubStub(_repos()) as hub:
        assert download.main(["--only", "queries,base", "--local_dir", str(tmp_path), "--endpoint", hub.url]) == 0
    assert (tmp_path / "data/RealScholarQuery/test.jsonl").exists()
    assert not (tmp_path / "data/paper_database").exists()
    assert (tmp_path / "checkpoints/Qwen2.5-7B-Instruct/config.json").exists()
    assert not (tmp_path / "checkpoints/pasa-7b-crawler").exists()


def test_dataset_under_a_prefix_is_linked_to_the_default_paths(tmp_path):
    with HubStub(_repos(dataset_prefix="pasa-dataset/")) as hub:
        assert download.main(["--only", "paper_db", "--local_dir", str(tmp_path), "--endpoint", hub.url]) == 0
    zip_path = tmp_path / "data/paper_database/cs_paper_2nd.zip"
    assert zip_path.is_symlink() and zip_path.read_text() == "paper_database/cs_paper_2nd.zip\n"


def test_interrupted_file_resumes(tmp_path):
    with HubStub(_repos()) as hub:
        hub.fail_after_bytes = len(BIG) // 3  # the connection drops a third of the way into the first file body
        rc = download.main(["--only", "crawler", "--local_dir", str(tmp_path), "--endpoint", hub.url])
        if rc != 0:  # huggingface_hub may give up on this run; the next run continues the .incomplete part
            rc = download.main(["--only", "crawler", "--local_dir", str(tmp_path), "--endpoint", hub.url])
    assert rc == 0
    assert (tmp_path / "checkpoints/pasa-7b-crawler/model.safetensors").read_bytes() == BIG


def test_missing_dataset_file_names_the_table_to_fix(tmp_path, capsys):
    repos = _repos()
    del repos[("dataset", "CarlanLark/pasa-dataset")]["RealScholarQuery/test.jsonl"]
    with HubStub(repos) as hub:
        assert download.main(["--only", "queries", "--local_dir", str(tmp_path), "--endpoint", hub.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RealScholarQuery/test.jsonl" in err[0] and "DATASET_FILES" in err[0]


def test_unreachable_hub_is_one_line(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert download.main(["--only", "data", "--local_dir", str(tmp_path), "--endpoint", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "CarlanLark/pasa-dataset" in err[0]
    assert download.main(["--only", "crawler", "--local_dir", str(tmp_path), "--endpoint", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bytedance-research/pasa-7b-crawler" in err[0]


def test_dry_run_fetches_no_file(tmp_path, capsys):
    with HubStub(_repos()) as hub:
        assert (
            download.main(["--only", "models,data", "--dry_run", "--local_dir", str(tmp_path), "--endpoint", hub.url])
            == 0
        )
        assert _file_gets(hub) == []
    out = capsys.readouterr().out
    assert "3 files" in out and "data/paper_database/id2paper.json" in out
    assert not (tmp_path / "data").exists()


def test_hf_endpoint_and_hf_token_from_the_environment(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN")
    }
    with HubStub(_repos()) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_test_token", HF_HUB_DISABLE_PROGRESS_BARS="1")
        proc = subprocess.run(
            [sys.executable, "-m", "pasa.cli", "download", "--only", "selector", "--local_dir", str(tmp_path)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        repo_calls = [a for (_, path), a in zip(hub.requests, hub.auth) if "pasa-7b-selector" in path]
        assert len(repo_calls) >= 3 and all(a == "Bearer hf_test_token" for a in repo_calls)
    assert (tmp_path / "checkpoints/pasa-7b-selector/config.json").exists()


def test_offline_mode_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for only in ("data", "selector"):
        assert download.main(["--only", only, "--local_dir", str(tmp_path), "--endpoint", "http://127.0.0.1:9"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "HF_HUB_OFFLINE" in err[0], err
