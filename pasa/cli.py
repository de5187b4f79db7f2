"""The ``pasa`` command: ``pasa run | demo | eval | baseline | index | download | reproduce | tiny | mini``.

Each subcommand lives in its own module with a ``main(argv) -> int``; this file only dispatches, so
``pasa eval`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("pasa.runner:main", "run the agent on one query or a jsonl of queries"),
    "demo": ("pasa.demo:demo_main", "run the whole loop offline on a tiny model and an embedded paper set"),
    "eval": ("pasa.evaluate:main", "score a results folder with the paper's metrics"),
    "baseline": ("pasa.baselines:main", "run a baseline (Google, Google + LLM paraphrase) into a results folder"),
    "index": ("pasa.tools.local_search:main", "build the offline search index over a paper database"),
    "build-db": (
        "pasa.build_db:main",
        "build a paper database (+ search/title indexes) from unarXive and arXiv metadata",
    ),
    "download": ("pasa.download:main", "download the released checkpoints, base model and data (Hugging Face)"),
    "reproduce": ("pasa.reproduce:main", "run RealScholarQuery + AutoScholarQuery test, table beside the paper's"),
    "tiny": ("pasa.tiny:main", "build tiny checkpoints, paper DB and data files (CPU smoke runs, docs tests)"),
    "serve": ("pasa.serve.server:main", "a web app and JSON API over the agent (models load once, searches queue)"),
    "mini": ("pasa.mini:main", "prepare SmolLM2-135M-Instruct for the CPU recipe on real queries (docs/mini.md)"),
}


def version() -> str:
    """The installed package's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pasa")
    except PackageNotFoundError:
        from pasa import __version__

        return __version__


def usage() -> str:
    lines = ["usage: pasa <command> [options]", "       pasa --version", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`pasa <command> --help` for the options of one command, e.g. `pasa run --help`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"pasa {version()}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"pasa: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[argv[0]]
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
