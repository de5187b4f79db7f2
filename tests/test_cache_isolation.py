"""The suite writes no cache outside its own session folder: Hugging Face, XDG, torch, triton and pasa caches."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CACHE_ROOT, CACHE_VARS

PROBE = """
import json, os
import huggingface_hub.constants as hub
import torch.hub
print(json.dumps({"hub_cache": hub.HF_HUB_CACHE, "hf_home": hub.HF_HOME, "torch_home": torch.hub.get_dir(),
                  "pasa": os.environ.get("PASA_CACHE_DIR")}))
"""


def _inside(path: str) -> bool:
    return Path(path).resolve().is_relative_to(CACHE_ROOT.resolve())


def test_every_cache_variable_points_into_the_session_folder():
    real_home_cache = Path.home() / ".cache"
    for var in CACHE_VARS:
        assert _inside(os.environ[var]), var
        assert not Path(os.environ[var]).resolve().is_relative_to(real_home_cache.resolve()), var


def test_libraries_and_subprocesses_resolve_their_caches_inside_the_session_folder():
    import huggingface_hub.constants as hub

    assert _inside(hub.HF_HUB_CACHE) and _inside(hub.HF_HOME)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    paths = json.loads(out.strip().splitlines()[-1])
    for name, path in paths.items():
        assert _inside(path), (name, path)


def test_a_hub_download_lands_in_the_session_cache():
    from tests.hub_stub import HubStub

    before = set(CACHE_ROOT.rglob("*"))
    with HubStub({("model", "org/tiny"): {"config.json": b"{}"}}) as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env["HF_ENDPOINT"] = hub.url
        code = "from huggingface_hub import hf_hub_download; print(hf_hub_download('org/tiny', 'config.json'))"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    path = out.strip().splitlines()[-1]
    assert _inside(path)
    assert set(CACHE_ROOT.rglob("*")) > before
