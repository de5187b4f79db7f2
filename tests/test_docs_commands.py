"""Every command block marked ``<!-- tested -->`` in README.md and docs/*.md runs as written on tiny artifacts.

Mark a block by putting ``<!-- tested -->`` on the line right before its ```` ```bash ```` fence. The block runs
with ``bash -e`` (one shell per block, so ``cd`` and variables carry over inside it) in a fresh copy of a
``pasa tiny`` folder: ``checkpoints/``, ``data/`` (released layout, tiny random models, toy data) and links to
``scripts/`` and ``configs/``. ``/tmp/pasa-tiny`` in a block stands for that folder. No key is set and nothing
leaves the machine: ``HF_ENDPOINT`` points at a loopback Hub stand-in serving the tiny artifacts (so
``pasa download`` runs too), and without ``SERPER_API_KEY`` every search is offline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub_stub import HubStub

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tested -->"
TINY_PLACEHOLDER = "/tmp/pasa-tiny"
BLOCK_TIMEOUT_S = 600
_FENCE_RE = re.compile(r"^```(bash|sh|shell)\s*$")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def extract_tested_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the fence, block text) for every bash fence right after a ``<!-- tested -->`` line.

    Markers inside another fence (an example of the marker itself) are text, not markers.

    >>> extract_tested_blocks("x\\n<!-- tested -->\\n```bash\\necho hi\\n```\\n```bash\\nno\\n```\\n")
    [(3, 'echo hi\\n')]
    >>> extract_tested_blocks("````md\\n<!-- tested -->\\n```bash\\nexample\\n```\\n````\\n")
    []
    """
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped == MARKER and i + 1 < len(lines) and _FENCE_RE.match(lines[i + 1].strip()):
            start = i + 1
            j = start + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            blocks.append((start + 1, "".join(line + "\n" for line in lines[start + 1 : j])))
            i = j
        elif stripped.startswith("```"):  # any other fence: skip to its closing line (same number of backticks)
            ticks = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            i += 1
            while i < len(lines) and lines[i].strip() != ticks:
                i += 1
        i += 1
    return blocks


def _collect() -> list:
    params = []
    for path in doc_files():
        for lineno, block in extract_tested_blocks(path.read_text(encoding="utf-8")):
            rel = path.relative_to(ROOT)
            params.append(pytest.param(rel, block, id=f"{rel}:{lineno}"))
    return params


BLOCKS = _collect()


def test_marker_is_found_and_blocks_exist():
    assert len(BLOCKS) >= 3, "README.md's tested blocks went missing"
    text = "<!-- tested -->\n\n```bash\nnot tested: a blank line between\n```\n"
    assert extract_tested_blocks(text) == []


PRIVATE_ADDRESS_RE = re.compile(
    r"(?<![\d.])(?:10(?:\.\d{1,3}){3}|172\.(?:1[6-9]|2\d|3[01])(?:\.\d{1,3}){2}|192\.168(?:\.\d{1,3}){2})(?![\d.])"
)


def test_examples_use_host_placeholders_not_private_addresses():
    """People run examples as written: a private address would reach some other machine on their network."""
    files = doc_files() + sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "scripts").glob("*.*"))
    found = [
        f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for m in PRIVATE_ADDRESS_RE.finditer(line)
    ]
    assert found == []
    assert PRIVATE_ADDRESS_RE.search("MAIN_PROCESS_IP=10.0.0.1") and PRIVATE_ADDRESS_RE.search("http://192.168.1.5:80")
    assert not PRIVATE_ADDRESS_RE.search("version 2.10.0.1 of 172.15.0.1")


def test_documented_model_flags_are_the_current_ones():
    old = re.compile(r"pasa run [^`\n]*--(?:crawler|selector) ")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in doc_files() for m in old.finditer(p.read_text())]
    assert found == []


def _hub_repos(tiny: Path) -> dict:
    from pasa.download import ARTIFACTS, DATASET_FILES

    repos = {}
    for artifact in ARTIFACTS.values():
        folder = tiny / artifact.local_path
        if artifact.repo_type == "model":
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        else:
            files = {name: (folder / local).read_bytes() for name, (local, _) in DATASET_FILES.items()}
        repos[(artifact.repo_type, artifact.repo_id)] = files
    return repos


@pytest.mark.slow
@pytest.mark.parametrize("doc,block", BLOCKS)
def test_documented_commands_run(doc, block, tiny_artifacts, tmp_path):
    work = tmp_path / "pasa-tiny"
    shutil.copytree(tiny_artifacts, work, symlinks=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")
    }
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(
        HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false", PASA_CACHE_DIR=str(tmp_path / "cache")
    )
    script = "set -eo pipefail\n" + block.replace(TINY_PLACEHOLDER, str(work))
    with HubStub(_hub_repos(tiny_artifacts)) as hub:
        env["HF_ENDPOINT"] = hub.url
        proc = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
        )
    assert proc.returncode == 0, (
        f"{doc}: block failed (exit {proc.returncode})\n--- block ---\n{block}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
