"""Offline test harness: a tiny Qwen2 checkpoint and tokenizer built in-process, fakes, fixture paths."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Every cache a test (or a subprocess it starts) could write goes under one folder made for this session, so the
# suite never touches the user's ~/.cache (Hugging Face Hub refs, datasets, torch/triton kernels, pasa's HTTP
# cache). Set at import time, before huggingface_hub reads HF_HOME into its constants; removed when the session ends.
CACHE_ROOT = Path(tempfile.mkdtemp(prefix="pasa-tests-cache-"))
CACHE_VARS = {
    "XDG_CACHE_HOME": "xdg",
    "HF_HOME": "huggingface",
    "HF_HUB_CACHE": "huggingface/hub",
    "HF_DATASETS_CACHE": "huggingface/datasets",
    "HF_ASSETS_CACHE": "huggingface/assets",
    "TORCH_HOME": "torch",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TORCH_EXTENSIONS_DIR": "torch_extensions",
    "TRITON_HOME": "triton",
    "TRITON_CACHE_DIR": "triton/cache",
    "PASA_CACHE_DIR": "pasa",
}
for _var, _sub in CACHE_VARS.items():
    os.environ[_var] = str(CACHE_ROOT / _sub)


def pytest_unconfigure(config):
    shutil.rmtree(CACHE_ROOT, ignore_errors=True)


FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """Path of a tiny random Qwen2ForCausalLM + byte-level BPE tokenizer saved with ``save_pretrained``."""
    from pasa.demo import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-qwen2")))


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> Path:
    """A `pasa tiny` folder (tiny checkpoints, paper DB, queries, SFT data in the released layout), built once."""
    from pasa.tiny import build_tiny

    root = tmp_path_factory.mktemp("pasa-tiny")
    build_tiny(str(root))
    return root


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` when present; tests that need it skip cleanly otherwise."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
