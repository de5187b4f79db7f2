"""Command lines of the ``pasa`` commands: ``HfArgumentParser`` over the commands' dataclasses, as trl's scripts do.

::

    parser = make_parser((RunArgs, AgentConfig, HttpConfig), prog="pasa run", example="pasa run --query '...'")
    args, config, http = parse_dataclasses(parser, argv)

A flag the parser does not know stops the command with one line and, when one is close, the flag meant
(``pasa run: error: unrecognized argument --quey; did you mean --query?``), exit status 2. The released flag names
are accepted by the released entry point only (``run_paper_agent.py``, :func:`add_released_names`).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence

from pasa.checks import USAGE_EXIT

logger = logging.getLogger(__name__)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` unless the help text already says its default, and keeps the example's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if "default" in help_.lower() or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return help_
        if isinstance(action, argparse._StoreConstAction) or action.nargs == 0:  # noqa: SLF001
            return help_
        return help_ + " (default: %(default)s)"


def make_parser(dataclass_types, prog: str, example: str | None = None, description: str | None = None):
    """An ``HfArgumentParser`` named ``prog`` (``pasa run``) with an example in its ``--help`` epilog."""
    from transformers import HfArgumentParser

    epilog = f"example:\n  {example}" if example else None
    return HfArgumentParser(
        dataclass_types, prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser whose ``parse_args`` first checks the flags (:func:`check_flags`): a mistyped one is one
    line naming the closest known flag, before any other error (a missing required argument) could hide it.
    ``parse_known_args`` is argparse's own: the flags it does not know are the caller's."""

    def parse_args(self, args=None, namespace=None):
        return super().parse_args(check_flags(args, self), namespace)


def make_argparser(prog: str, example: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """A plain ``argparse`` parser with the same help layout as :func:`make_parser`."""
    epilog = f"example:\n  {example}" if example else None
    return ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def known_flags(parser: argparse.ArgumentParser) -> list[str]:
    """The long option strings a parser accepts (``HfArgumentParser``'s dashed twins of ``--a_b`` left out)."""
    names = {s for s in parser._option_string_actions if s.startswith("--")}  # noqa: SLF001
    return sorted(s for s in names if "-" not in s[2:] or s[2:].replace("-", "_") not in {n[2:] for n in names})


def unknown_flag_message(flag: str, known: Iterable[str]) -> str:
    """The one line for a flag no option matches, with the closest known flag when one is close.

    >>> unknown_flag_message("--quey", ["--query", "--output_dir"])
    'unrecognized argument --quey; did you mean --query?'
    >>> unknown_flag_message("--zzz", ["--query"])
    'unrecognized argument --zzz (see --help)'
    """
    close = difflib.get_close_matches(flag, list(known), n=1, cutoff=0.6)
    return (
        f"unrecognized argument {flag}; did you mean {close[0]}?"
        if close
        else f"unrecognized argument {flag} (see --help)"
    )


def find_unknown_flag(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """The first ``--flag`` of ``argv`` that ``parser`` does not accept (an unambiguous prefix is accepted, as
    argparse does), or None."""
    known = [s for s in parser._option_string_actions if s.startswith("--")]  # noqa: SLF001
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("--") or len(arg) == 2:
            continue
        name = arg.partition("=")[0]
        if name in known or (parser.allow_abbrev and len([k for k in known if k.startswith(name)]) == 1):
            continue
        return name
    return None


def check_flags(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` (default ``sys.argv[1:]``) as a list; a flag ``parser`` does not know prints one line with the
    closest known flag and exits with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = find_unknown_flag(argv, parser)
    if unknown is not None:
        print(f"{parser.prog}: error: {unknown_flag_message(unknown, known_flags(parser))}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)
    return argv


def parse_dataclasses(parser, argv: Sequence[str] | None = None) -> tuple:
    """``parser.parse_args_into_dataclasses(argv)`` after :func:`check_flags`; a value a dataclass refuses (its
    ``__post_init__`` raising ``ValueError``) is one line and exit status 2."""
    argv = check_flags(argv, parser)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT) from None


def add_released_names(parser: argparse.ArgumentParser, names: Mapping[str, str]) -> None:
    """Accept each released flag of ``names`` (released -> ours) as a second spelling of ours, in ``parser``."""
    for released, ours in names.items():
        action = parser._option_string_actions[ours]  # noqa: SLF001 - argparse keeps no public lookup
        parser.add_argument(
            released, dest=action.dest, type=action.type, default=argparse.SUPPRESS, help=f"released name of {ours}"
        )


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") in ("", "0") and os.environ.get("LOCAL_RANK", "0") in ("", "0")


def quiet_other_ranks() -> bool:
    """In a multi-process launch (torchrun / accelerate), let only rank 0 print warnings: every other rank's logging
    goes to ERROR and Python warnings are ignored, so each warning appears once. Returns whether this process is
    rank 0. Call it at the top of a script's ``main``."""
    import warnings

    if _is_rank0():
        return True
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("transformers", "trl", "accelerate", "deepspeed", "datasets", "pasa", "trl_ext"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    try:  # transformers keeps its own verbosity
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    return False


def end_launched_process(exit_code: int = 0) -> int:
    """End one process of a launched run (torchrun / accelerate) once its work is saved: wait for the other ranks,
    destroy the process group, and in a multi-process CPU run leave at once, without interpreter finalization.

    With torch 2.13's CPU backends a rank sometimes aborted in C++ teardown at finalization ("terminate called
    without an active exception", SIGABRT) or stayed stuck there, so the launch failed, or never ended, after
    everything was saved. GPU runs return normally. Returns ``exit_code`` (when it returns)."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    return exit_code
