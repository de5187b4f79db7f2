"""``pasa download``: the released checkpoints, the base model and the PaSa data, where every default path points.

Launch lines::

    pasa download                            # everything: both checkpoints, Qwen2.5-7B-Instruct, the dataset
    pasa download --only models,data         # what `pasa reproduce` needs (no base model)
    pasa download --only crawler,selector,queries --local_dir /big/disk/pasa
    pasa download --dry_run                  # the plan: repos, files, sizes, destinations
    HF_ENDPOINT=https://hf-mirror.com HF_TOKEN=hf_... pasa download --only data

Layout (README "Data and checkpoints"; paths relative to ``--local_dir``, default the current folder)::

    checkpoints/pasa-7b-crawler        bytedance-research/pasa-7b-crawler
    checkpoints/pasa-7b-selector       bytedance-research/pasa-7b-selector
    checkpoints/Qwen2.5-7B-Instruct    Qwen/Qwen2.5-7B-Instruct (SFT base; configs/recipes/sft_*.yaml)
    data/AutoScholarQuery/{train,dev,test}.jsonl, data/RealScholarQuery/test.jsonl,
    data/paper_database/{cs_paper_2nd.zip,id2paper.json}, data/sft_crawler/train.jsonl,
    data/sft_selector/{train,test}.jsonl          CarlanLark/pasa-dataset

Downloads go through ``huggingface_hub.snapshot_download`` into ``local_dir`` (resumable: an interrupted file is
continued from its ``.incomplete`` part on the next run; files already there are checked, not fetched again), with
its progress bars. ``HF_ENDPOINT`` (a mirror) and ``HF_TOKEN`` are read when the command runs.

**The dataset's file names are assumed.** This repository was built without access to the Hub, so the names in
:data:`DATASET_FILES` are those of the released README's ``data/`` tree. Each is looked up in the dataset repo's
listing exactly, then as a suffix (``pasa-dataset/AutoScholarQuery/train.jsonl`` also matches), and linked to its
local path when the two differ. A name not found is reported with the repo's actual listing: fix the table.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Artifact:
    """One Hub repo and the folder (relative to ``--local_dir``) it lands in."""

    name: str
    repo_id: str
    repo_type: str  # "model" | "dataset"
    local_path: str
    help: str


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact("crawler", "bytedance-research/pasa-7b-crawler", "model", "checkpoints/pasa-7b-crawler", "~15 GB"),
        Artifact("selector", "bytedance-research/pasa-7b-selector", "model", "checkpoints/pasa-7b-selector", "~15 GB"),
        Artifact("base", "Qwen/Qwen2.5-7B-Instruct", "model", "checkpoints/Qwen2.5-7B-Instruct", "~15 GB, for SFT"),
        Artifact("data", "CarlanLark/pasa-dataset", "dataset", "data", "queries, paper DB, SFT data"),
    )
}

# Dataset repo path -> (local path under data/, part). EASY TO FIX: the repo paths are assumed (module docstring).
DATASET_FILES: dict[str, tuple[str, str]] = {
    "AutoScholarQuery/train.jsonl": ("AutoScholarQuery/train.jsonl", "queries"),
    "AutoScholarQuery/dev.jsonl": ("AutoScholarQuery/dev.jsonl", "queries"),
    "AutoScholarQuery/test.jsonl": ("AutoScholarQuery/test.jsonl", "queries"),
    "RealScholarQuery/test.jsonl": ("RealScholarQuery/test.jsonl", "queries"),
    "paper_database/cs_paper_2nd.zip": ("paper_database/cs_paper_2nd.zip", "paper_db"),
    "paper_database/id2paper.json": ("paper_database/id2paper.json", "paper_db"),
    "sft_crawler/train.jsonl": ("sft_crawler/train.jsonl", "sft_data"),
    "sft_selector/train.jsonl": ("sft_selector/train.jsonl", "sft_data"),
    "sft_selector/test.jsonl": ("sft_selector/test.jsonl", "sft_data"),
}
DATA_PARTS = ("queries", "paper_db", "sft_data")
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ("crawler", "selector", "base", "data"),
    "models": ("crawler", "selector"),
    "crawler": ("crawler",),
    "selector": ("selector",),
    "base": ("base",),
    "data": ("data",),
    **{part: ("data",) for part in DATA_PARTS},
}


class DownloadError(RuntimeError):
    """A download that cannot go on; the message is the one line the command prints."""


def parse_only(only: str) -> tuple[list[str], set[str]]:
    """``"models,queries"`` -> (artifact names in order, data parts). Raises ``ValueError`` on an unknown name.

    >>> parse_only("models,queries")
    (['crawler', 'selector', 'data'], {'queries'})
    """
    names: list[str] = []
    parts: set[str] = set()
    for word in (w.strip() for w in only.split(",") if w.strip()):
        if word not in GROUPS:
            raise ValueError(f"unknown --only {word!r}; choose from {', '.join(GROUPS)}")
        names += [n for n in GROUPS[word] if n not in names]
        if word in DATA_PARTS:
            parts.add(word)
        elif "data" in GROUPS[word]:
            parts.update(DATA_PARTS)
    return [n for n in ARTIFACTS if n in names], parts


def match_dataset_files(repo_files: list[str], parts: set[str]) -> tuple[dict[str, str], list[str]]:
    """Map the wanted :data:`DATASET_FILES` entries to the repo's paths: exact name first, then a unique suffix.

    Returns (repo path -> local path under data/, wanted names not found).

    >>> match_dataset_files(["data/RealScholarQuery/test.jsonl"], {"queries"})[0]
    {'data/RealScholarQuery/test.jsonl': 'RealScholarQuery/test.jsonl'}
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    present = set(repo_files)
    for name, (local, part) in DATASET_FILES.items():
        if part not in parts:
            continue
        if name in present:
            found[name] = local
            continue
        candidates = [f for f in repo_files if f.endswith("/" + name)]
        if len(candidates) == 1:
            found[candidates[0]] = local
        else:
            missing.append(name)
    return found, missing


def _hub_call_failed(err: Exception, what: str, endpoint: str) -> DownloadError:
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if constants.is_offline_mode():
        hint = "HF_HUB_OFFLINE is set: unset it to download"
    elif isinstance(err, GatedRepoError):
        hint = "the repo is gated: accept its terms on the Hub and set HF_TOKEN"
    elif isinstance(err, RepositoryNotFoundError):
        hint = "repo not found there (or private: set HF_TOKEN)"
    else:
        hint = "no connection? set HF_ENDPOINT to a mirror, or copy the files by hand (README 'Data and checkpoints')"
    cause = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return DownloadError(f"could not download {what} from {endpoint} ({type(err).__name__}: {cause}); {hint}")


def download_artifact(
    artifact: Artifact,
    local_dir: str,
    endpoint: str,
    token: str | None,
    parts: set[str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Download one artifact under ``local_dir``; returns the local files. Raises :class:`DownloadError`."""
    from huggingface_hub import HfApi, snapshot_download

    dest = os.path.join(local_dir, artifact.local_path)
    what = f"{artifact.repo_type} {artifact.repo_id}"
    kwargs = {"repo_type": artifact.repo_type, "endpoint": endpoint, "token": token}
    try:
        if artifact.repo_type != "dataset":
            print(f"{artifact.name}: {artifact.repo_id} -> {dest}" + (" (dry run)" if dry_run else ""), flush=True)
            if dry_run:
                infos = snapshot_download(artifact.repo_id, local_dir=dest, dry_run=True, **kwargs)
                size = sum(getattr(i, "file_size", 0) or 0 for i in infos)
                todo = sum(bool(getattr(i, "will_download", True)) for i in infos)
                print(f"  {len(infos)} files, {size / 1e9:.2f} GB, {todo} to download")
                return [os.path.join(dest, i.filename) for i in infos]
            snapshot_download(artifact.repo_id, local_dir=dest, **kwargs)
            files = [f for f in os.listdir(dest) if not f.startswith(".")] if os.path.isdir(dest) else []
            if not any(f == "config.json" for f in files):
                raise DownloadError(f"{what}: nothing usable arrived in {dest} (no config.json); rerun to resume")
            return [os.path.join(dest, f) for f in sorted(files)]
        repo_files = HfApi(endpoint=endpoint, token=token).list_repo_files(
            artifact.repo_id, repo_type=artifact.repo_type
        )
    except (DownloadError, TypeError, AttributeError, NameError):  # ours, or a bug: not a Hub failure
        raise
    except Exception as err:  # connection, HTTP status, offline mode: one line, never a traceback
        raise _hub_call_failed(err, what, endpoint) from err
    found, missing = match_dataset_files(repo_files, parts if parts is not None else set(DATA_PARTS))
    if missing:
        raise DownloadError(
            f"{what} has no file named {', '.join(missing)}; its files are: {', '.join(sorted(repo_files)[:40])}. "
            "Fix DATASET_FILES in pasa/download.py"
        )
    print(f"data: {artifact.repo_id} ({len(found)} files) -> {dest}" + (" (dry run)" if dry_run else ""), flush=True)
    for repo_path, local in found.items():
        print(f"  {repo_path} -> {os.path.join(dest, local)}")
    if dry_run:
        return [os.path.join(dest, local) for local in found.values()]
    try:
        snapshot_download(artifact.repo_id, local_dir=dest, allow_patterns=list(found), **kwargs)
    except (TypeError, AttributeError, NameError):
        raise
    except Exception as err:
        raise _hub_call_failed(err, what, endpoint) from err
    out = []
    for repo_path, local in found.items():
        got, want = os.path.join(dest, repo_path), os.path.join(dest, local)
        if not os.path.exists(got):
            raise DownloadError(f"{what}: {repo_path} did not arrive in {dest}; rerun to resume")
        if got != want and not os.path.exists(want):  # the repo's name differs: link it where the defaults look
            os.makedirs(os.path.dirname(want), exist_ok=True)
            os.symlink(os.path.relpath(got, os.path.dirname(want)), want)
        out.append(want)
    return out


def check_endpoint(endpoint: str, repos: list[str], timeout: float = 10.0) -> None:
    """One request to the Hub before anything else, so that no connection fails in seconds, not after retries."""
    import requests

    try:
        requests.head(endpoint, timeout=timeout, allow_redirects=False)
    except requests.RequestException as err:
        cause = str(err).splitlines()[0][:160]
        raise DownloadError(
            f"cannot reach {endpoint} to download {', '.join(repos)} ({type(err).__name__}: {cause}); "
            "set HF_ENDPOINT to a mirror, "
            "or copy the files by hand (README 'Data and checkpoints')"
        ) from err


def make_parser():
    from pasa.flags import make_argparser

    p = make_argparser(
        "pasa download",
        example="pasa download --only models,data",
        description="Download the released PaSa checkpoints, the base model and the dataset from the Hugging Face "
        "Hub into the layout every default path expects (resumable).",
    )
    names = ", ".join(f"{k} ({a.help})" if (a := ARTIFACTS.get(k)) else k for k in GROUPS)
    p.add_argument("--only", default="all", help=f"Comma-separated subset: {names}.")
    p.add_argument(
        "--local_dir", default=".", help="Root of checkpoints/ and data/ (default: the current folder, the repo root)."
    )
    p.add_argument("--endpoint", default=None, help="Hub URL (default: $HF_ENDPOINT, else https://huggingface.co).")
    p.add_argument("--dry_run", action="store_true", help="List what would be downloaded and where; fetch nothing.")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        names, parts = parse_only(args.only)
    except ValueError as err:
        parser.error(str(err))
    endpoint = (args.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = os.environ.get("HF_TOKEN") or None
    done: list[str] = []
    try:
        from huggingface_hub import constants

        if not constants.is_offline_mode():
            check_endpoint(endpoint, [ARTIFACTS[n].repo_id for n in names])
        for name in names:
            download_artifact(ARTIFACTS[name], args.local_dir, endpoint, token, parts, args.dry_run)
            done.append(name)
    except DownloadError as err:
        print(f"pasa download: {err}", file=sys.stderr)
        if done:
            print(f"pasa download: finished before the error: {', '.join(done)}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"done: {', '.join(done)} under {os.path.abspath(args.local_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
