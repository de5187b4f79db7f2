"""Checks of command-line input, run before any work.

Each check raises :class:`CheckError` with one line naming the problem and what to do; a command prints it with
:func:`exit_with` (``<prog>: error: <line>``, exit status 2 for usage errors, 1 for an unreachable server) instead
of a traceback. Used by ``pasa run``, ``pasa eval`` and the scripts that load a model::

    from pasa.checks import CheckError, check_model_path, exit_with

    try:
        model_path = check_model_path(args.model_name_or_path, "--model_name_or_path", allow_hub_id=True)
    except CheckError as err:
        exit_with(err, "sft.py")

A path-like model name (``checkpoints/pasa-7b-crawler``, ``./out``, ``/abs``) that does not exist is reported as
"checkpoint not found … run `pasa download`" and never handed to transformers, which would take it for a Hugging
Face repo id and retry the Hub for ~50 s before a 100-line traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

USAGE_EXIT = 2  # argparse's status for a bad command line
ENVIRONMENT_EXIT = 1  # the command line is fine, something it points at is not (a server down)

URL_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
HF_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# First path components that name a local folder in this project's layout, never a Hub organisation.
LOCAL_PREFIXES = ("checkpoints", "data", "results", "outputs", "output", "models", "runs", "tmp")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
SELECTOR_ENDPOINTS = ("completions", "chat")

# Sane bounds of the agent's knobs (AgentConfig): (low, high, why the high bound). Values outside are typos or
# runaway costs: --expand_layers 1000000000 burns ~22 CPU-minutes per query before doing anything useful.
AGENT_BOUNDS: dict[str, tuple[int, int, str]] = {
    "expand_layers": (0, 20, "the paper uses 2-3; each layer multiplies the papers expanded"),
    "search_queries": (1, 100, "the crawler writes ~5"),
    "search_papers": (1, 100, "Google returns at most 100 results per call"),
    "expand_papers": (1, 10_000, "papers expanded per layer"),
    "threads_num": (1, 512, "concurrent tool calls"),
}


class CheckError(ValueError):
    """Bad input found before any work: ``str(err)`` is the one line to print, ``exit_code`` the status."""

    def __init__(self, message: str, exit_code: int = USAGE_EXIT):
        super().__init__(message)
        self.exit_code = exit_code


def exit_with(err: CheckError, prog: str) -> NoReturn:
    """Print ``<prog>: error: <message>`` on stderr and exit with the error's status (for CLI entry points)."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    raise SystemExit(err.exit_code)


# -- models -----------------------------------------------------------------------------------------------------
def is_http_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def looks_like_path(spec: str) -> bool:
    """Whether a model name can only be meant as a local folder (not a Hugging Face ``org/name`` repo id).

    >>> [looks_like_path(s) for s in ("checkpoints/pasa-7b-crawler", "./m", "/abs/m", "Qwen/Qwen2.5-7B-Instruct")]
    [True, True, True, False]
    """
    if spec.startswith(("/", "./", "../", "~", ".\\")) or spec in (".", "..") or "\\" in spec:
        return True
    if spec.endswith("/") or spec.count("/") != 1 or not HF_REPO_ID_RE.match(spec):
        return True
    first = spec.split("/", 1)[0]
    return first in LOCAL_PREFIXES or os.path.isdir(first)


# Where `pasa download` puts the released checkpoints and the SFT base (README "Data and checkpoints"); any other
# folder is a training output or the user's own, which a download would not fill.
DOWNLOAD_FOLDERS = ("checkpoints/pasa-7b-crawler", "checkpoints/pasa-7b-selector", "checkpoints/Qwen2.5-7B-Instruct")


def missing_checkpoint_hint(spec: str) -> str:
    """What to do about a missing or empty checkpoint folder: download it, or train it, or pass another.

    >>> missing_checkpoint_hint("checkpoints/pasa-7b-crawler")
    'run `pasa download` (it fills checkpoints/) or pass a checkpoint folder'
    >>> missing_checkpoint_hint("results/sft_crawler")
    'a training output folder: train it first (scripts/train_sft_*.sh, scripts/train_ppo_crawler.sh) or pass a checkpoint folder'
    """
    relative = os.path.normpath(os.path.relpath(os.path.abspath(os.path.expanduser(spec))))
    if relative in DOWNLOAD_FOLDERS:
        return "run `pasa download` (it fills checkpoints/) or pass a checkpoint folder"
    if relative.startswith("results" + os.sep) or "sft" in relative or "ppo" in relative:
        return (
            "a training output folder: train it first (scripts/train_sft_*.sh, scripts/train_ppo_crawler.sh) "
            "or pass a checkpoint folder"
        )
    return "run `pasa download` for the released checkpoints, or pass a checkpoint folder"


def check_model_path(
    spec: str | None,
    flag: str = "--model_name_or_path",
    allow_url: bool = False,
    allow_hub_id: bool = True,
    need_tokenizer: bool = True,
    gguf_file: str | None = None,
) -> str:
    """Validate a model given on the command line; returns it (``~`` expanded) or raises :class:`CheckError`.

    Args:
        spec: a checkpoint folder, an ``http(s)://…/v1[#model]`` server URL (when ``allow_url``) or a Hugging
            Face repo id ``org/name`` (when ``allow_hub_id`` and it is not path-like, see :func:`looks_like_path`).
        flag: the option's name, for the message.
        need_tokenizer: the folder must hold tokenizer files as well (every model the agent or SFT loads does).
        gguf_file: the folder must hold this GGUF file (weights, config and tokenizer in one) instead.
    """
    if not spec:
        raise CheckError(f"{flag} is required (a checkpoint folder{' or a server URL' if allow_url else ''})")
    match = URL_RE.match(spec)
    if match:
        if allow_url and is_http_url(spec):
            return spec
        what = (
            "an http(s):// OpenAI-compatible server URL or a local checkpoint folder"
            if allow_url
            else ("a local checkpoint folder")
        )
        raise CheckError(f"{flag} {spec!r}: {match['scheme']}:// is not supported; pass {what}")
    path = os.path.expanduser(spec)
    if not os.path.exists(path):
        if allow_hub_id and not looks_like_path(spec):
            return spec  # a Hub repo id: transformers resolves it (from its cache, or downloads it)
        raise CheckError(f"checkpoint not found: {spec} ({flag}); {missing_checkpoint_hint(spec)}")
    if not os.path.isdir(path):
        raise CheckError(f"{flag} {spec!r} is a file; pass the checkpoint folder (the one holding config.json)")
    names = set(os.listdir(path))
    if gguf_file:
        return check_gguf_file(path, gguf_file, flag)
    if "config.json" not in names:
        hint = (
            " (it holds checkpoint-* folders: pass one of them)"
            if any(n.startswith("checkpoint-") for n in names)
            else ""
        )
        raise CheckError(
            f"{flag} {spec!r} is not a model checkpoint: no config.json{hint}; {missing_checkpoint_hint(spec)}"
        )
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckError(f"{flag} {spec!r}: config.json cannot be read ({err}); re-download the checkpoint") from err
    if not isinstance(config, dict):
        raise CheckError(f"{flag} {spec!r}: config.json is not a JSON object; re-download the checkpoint")
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        raise CheckError(f"{flag} {spec!r} has no weights (*.safetensors / *.bin); the download is incomplete")
    if need_tokenizer and not names.intersection(TOKENIZER_FILES):
        raise CheckError(f"{flag} {spec!r} has no tokenizer files (tokenizer.json / tokenizer_config.json)")
    return path


def check_gguf_file(folder: str, gguf_file: str, flag: str) -> str:
    """``folder`` holds ``gguf_file`` and the ``gguf`` package that reads it is installed; returns ``folder``."""
    if os.path.basename(gguf_file) != gguf_file:
        raise CheckError(f"--gguf_file {gguf_file!r}: give the file's name inside the {flag} folder, not a path")
    if not os.path.isfile(os.path.join(folder, gguf_file)):
        found = sorted(n for n in os.listdir(folder) if n.endswith(".gguf"))
        raise CheckError(
            f"{flag} {folder!r} holds no {gguf_file!r} (--gguf_file); "
            + (f"GGUF files there: {', '.join(found)}" if found else "it holds no .gguf file")
        )
    if importlib.util.find_spec("gguf") is None:
        raise CheckError("--gguf_file needs the `gguf` package: pip install gguf (or the project's `mini` extra)")
    return folder


def resolve_model(
    spec: str, flag: str = "--crawler_path", cache_dir: str | None = None, gguf_file: str | None = None
) -> str:
    """The model ``pasa run`` loads for ``spec``: a server URL or a checkpoint folder as given, a Hugging Face name
    (``Qwen/Qwen2.5-7B-Instruct``) as its folder in the local Hugging Face cache. ``pasa run`` never downloads: a
    name that is not in the cache raises :class:`CheckError` saying how to download it, before any network call.
    """
    if is_http_url(spec) or looks_like_path(spec) or os.path.exists(os.path.expanduser(spec)):
        return check_model_path(spec, flag, allow_url=True, gguf_file=gguf_file)
    folder = cached_hub_snapshot(spec, cache_dir)
    if folder is None:
        raise CheckError(
            f"{flag} {spec!r} is not a local folder and not in the Hugging Face cache; download it first "
            f"(`huggingface-cli download {spec} --local-dir checkpoints/{spec.split('/')[-1]}`, or `pasa download` "
            "for the released models) and pass the folder"
        )
    return check_model_path(folder, flag, gguf_file=gguf_file)


def cached_hub_snapshot(repo_id: str, cache_dir: str | None = None) -> str | None:
    """The folder of ``repo_id`` in the local Hugging Face cache (no network), or None when it is not there."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


def check_search_service(source: Any, http: Any, timeout: float = 10.0) -> None:
    """One Google search through Serper, without retries, when ``source`` searches with it: a network that cannot
    reach the service or a key it rejects is one line before any model loads (exit status 1). Any other answer
    (a slow or busy service) is left to the batch, which retries.

    The probe is one Serper request (one credit of the key) per run."""
    from dataclasses import replace
    from urllib.parse import urlsplit

    searcher = getattr(source, "searcher", None)
    url = getattr(searcher, "serper_url", None)
    if getattr(searcher, "search_engine", "serper") != "serper":  # the keyless arXiv engine needs no probe
        return
    if type(searcher).__name__ != "OnlinePaperSource" or not url:
        return
    import requests

    from pasa.tools.http import HttpClient, MissingAPIKeyError, ServiceError
    from pasa.tools.serper import SERPER_KEY_ENV, search_arxiv_ids

    host = urlsplit(url).hostname or url
    probe = replace(http, no_cache=True, http_retries=0, http_timeout=timeout, http_connect_timeout=timeout)
    try:
        with HttpClient(probe) as client:
            search_arxiv_ids(client, "language models", k=1, url=url)
    except MissingAPIKeyError as err:
        raise CheckError(str(err)) from err
    except ServiceError as err:
        status = getattr(err, "status_code", None)
        if status in (401, 403):
            raise CheckError(
                f"{host} rejected the key in {SERPER_KEY_ENV} (HTTP {status}); check the key at https://serper.dev",
                ENVIRONMENT_EXIT,
            ) from err
        root = err
        while root.__cause__ is not None:
            root = root.__cause__
        if isinstance(root, requests.ConnectionError):  # refused, no route, no DNS, connect timeout
            raise CheckError(
                f"cannot reach {host} ({type(root).__name__}); check the network, or search offline with "
                "--online false --search_index DIR",
                ENVIRONMENT_EXIT,
            ) from err


def check_selector_endpoint(value: str, flag: str = "--selector_endpoint") -> str:
    if value not in SELECTOR_ENDPOINTS:
        raise CheckError(f"{flag} must be one of {', '.join(SELECTOR_ENDPOINTS)}, not {value!r}")
    return value


def check_model_server(spec: str, flag: str = "--crawler_path", timeout: float = 10.0, session=None) -> None:
    """One ``GET <base>/models`` before a batch: the server answers, and serves the model named after ``#``.

    Raises :class:`CheckError` (exit status 1) when the server cannot be reached or answers with an error, and
    (exit status 2) when it does not serve the model asked for.
    """
    base, _, model = spec.partition("#")
    url = base.rstrip("/") + "/models"
    if session is None:  # the one HTTP layer (key redaction, timeouts); no cache and no retries for a probe
        from pasa.tools.http import HttpClient, HttpConfig

        client = HttpClient(HttpConfig(no_cache=True, http_retries=0, http_timeout=timeout))

        def get(url, **kwargs):
            return client.get(url, cache=False, check_status=False, **kwargs)
    else:
        get = session.get
    headers = {}
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        resp = get(url, headers=headers, timeout=timeout)
    except Exception as err:  # connection refused, DNS, timeout: all mean "not reachable"
        root = err
        while root.__cause__ is not None:  # the HTTP layer wraps the transport error: name the original
            root = root.__cause__
        cause = type(root).__name__
        raise CheckError(
            f"cannot reach the model server of {flag} at {base} ({cause}); start it or fix the URL",
            ENVIRONMENT_EXIT,
        ) from err
    if resp.status_code in (401, 403):
        raise CheckError(
            f"the model server at {base} refused the request (HTTP {resp.status_code}); set OPENAI_API_KEY",
            ENVIRONMENT_EXIT,
        )
    if resp.status_code != 200:
        if model:  # some servers have no /models; a named model can still be used
            return
        raise CheckError(
            f"{base}/models answered HTTP {resp.status_code}; name the model as {base}#<model>", ENVIRONMENT_EXIT
        )
    try:
        served = [m["id"] for m in resp.json().get("data") or []]
    except (ValueError, AttributeError, KeyError, TypeError) as err:
        raise CheckError(f"{base}/models is not an OpenAI-compatible model list; is {base} the /v1 URL?") from err
    if model and served and model not in served:
        raise CheckError(f"{flag}: the server at {base} does not serve {model!r}; it serves {', '.join(served)}")
    if not model and not served:
        raise CheckError(f"{flag}: the server at {base} lists no models; name one as {base}#<model>")


# -- files and folders ------------------------------------------------------------------------------------------
def check_input_file(path: str, flag: str = "--input_file") -> str:
    """An existing, readable regular file."""
    if not os.path.exists(path):
        raise CheckError(f"{flag} {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckError(f"{flag} {path!r} is a folder; pass a .jsonl file with one query per line")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise CheckError(f"{flag} {path!r} cannot be read ({err.strerror or err})") from err
    return path


JSONL_EXAMPLE = '{"question": "Give me papers about ..."}'


def check_jsonl_file(path: str, flag: str = "--input_file") -> str:
    """An existing, readable query file whose first line is a JSON object (JSONL), not empty."""
    check_input_file(path, flag)
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            if line:
                break
        else:
            raise CheckError(f"{flag} {path!r} is empty; write one JSON object per line, e.g. {JSONL_EXAMPLE}")
    if not line.startswith("{"):
        short = line if len(line) <= 40 else line[:37] + "..."
        raise CheckError(
            f"{flag} {path!r} is not JSONL: its first line is {short!r}, not a JSON object; JSONL expected, "
            f"one object per line, e.g. {JSONL_EXAMPLE}"
        )
    return path


def check_output_dir(path: str, flag: str = "--output_dir") -> str:
    """Create the folder if needed and prove it writable (a probe file), before any query is computed."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CheckError(f"{flag} {path!r} is a file; pass a folder (one result file per query goes there)")
    try:
        os.makedirs(path, exist_ok=True)
        from pasa.io import make_temp_file

        fd, probe = make_temp_file(path, prefix=".tmp-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CheckError(f"{flag} {path!r} is not writable ({err.strerror or err}); pass another folder") from err
    return path


def check_builder_inputs(args: Any, prog: str) -> None:
    """The data builders' check (``scripts/build_*_data.py``): every input file given exists and the teacher is a
    checkpoint or a URL; one line and exit 2 before any work."""
    try:
        for flag in ("input_file", "pairs", "paper_db", "id2paper"):
            if getattr(args, flag, None):
                check_input_file(getattr(args, flag), f"--{flag}")
        if getattr(args, "teacher", None):
            check_model_path(args.teacher, "--teacher", allow_url=True)
            check_teacher_server(args.teacher)
    except CheckError as err:
        exit_with(err, prog)


def check_teacher_server(spec: str) -> None:
    """A teacher given as a URL answers before any record is built: OpenAI's API needs ``OPENAI_API_KEY``."""
    if not is_http_url(spec):
        return
    from urllib.parse import urlparse

    if urlparse(spec).hostname == "api.openai.com" and not os.environ.get("OPENAI_API_KEY"):
        raise CheckError("--teacher is OpenAI's API and OPENAI_API_KEY is not set; export OPENAI_API_KEY=...")
    check_model_server(spec, "--teacher")


def check_output_file(path: str, flag: str = "--output_file") -> str:
    """The file's folder exists (or can be created) and ``path`` is not a folder."""
    if os.path.isdir(path):
        raise CheckError(f"{flag} {path!r} is a folder; pass a file name")
    folder = os.path.dirname(os.path.abspath(path))
    check_output_dir(folder, flag=f"{flag}'s folder")
    return path


def check_index_dir(path: str, flag: str = "--search_index", command: str = "pasa index") -> str:
    """An index folder (``pasa index``'s, or the title index) that exists; its content is checked when loaded."""
    if not os.path.exists(path):
        # `pasa build-db --output_dir DIR` writes the title index into DIR/title_index
        parent, name = os.path.split(os.path.normpath(path))
        output_dir = parent or "." if command == "pasa build-db" and name == "title_index" else path
        raise CheckError(f"{flag} {path!r} does not exist; build it with `{command} --output_dir {output_dir} ...`")
    if not os.path.isdir(path):
        raise CheckError(f"{flag} {path!r} is a file; pass the folder `{command}` wrote")
    return path


def check_end_date(value: str | None, flag: str = "--end_date") -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d{8}", value):
        raise CheckError(f"{flag} must be YYYYMMDD, not {value!r}")
    from datetime import datetime

    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError as err:
        raise CheckError(f"{flag} {value!r} is not a date (YYYYMMDD)") from err
    return value


# -- knobs ------------------------------------------------------------------------------------------------------
def check_int_range(value: Any, flag: str, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckError(f"{flag} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CheckError(f"{flag} must be {bound}, got {value}" + (f" ({why})" if why else ""))
    return value


def check_agent_knobs(config: Any, bounds: Mapping[str, tuple[int, int, str]] = AGENT_BOUNDS) -> None:
    """Every bounded knob of an ``AgentConfig`` (or any object with those attributes) is in range."""
    for name, (low, high, why) in bounds.items():
        if hasattr(config, name):
            check_int_range(getattr(config, name), f"--{name}", low, high, why)
