"""Command-line plumbing shared by scripts/sft.py and scripts/ppo.py, around trl's ``TrlParser`` used as it is.

- :func:`rename_flags`: each script's ``RELEASED_FLAGS`` map (a released flag name -> the flag here with the same
  meaning) applied to argv before parsing;
- :func:`cpu_fallback_args`: the GPU recipes ask for bf16; on a machine without CUDA they run on CPU in float32,
  decided from ``torch.cuda.is_available()`` before ``TrainingArguments`` is built;
- :func:`parse_known_or_exit`: ``TrlParser.parse_args_and_config``, where a flag or recipe key no dataclass has
  stops with argparse's one-line error instead of a traceback;
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

# appended to the command line (the last value wins) when a bf16 recipe runs on a machine without CUDA
CPU_FALLBACK_ARGS = ("--use_cpu", "true", "--bf16", "false", "--dtype", "float32")


def rename_flags(argv: Sequence[str], names: Mapping[str, str]) -> list[str]:
    """``argv`` with every flag of ``names`` spelled the current way (``--old v`` and ``--old=v`` forms).

    >>> rename_flags(["--sft_model_path", "m", "--use_vm=false", "--seed", "1"],
    ...              {"--sft_model_path": "--model_name_or_path", "--use_vm": "--use_value_bootstrap"})
    ['--model_name_or_path', 'm', '--use_value_bootstrap=false', '--seed', '1']
    """
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(names[name] + eq + value if arg.startswith("--") and name in names else arg)
    return out


def parse_known_or_exit(parser, argv: Sequence[str]) -> tuple:
    """The dataclasses ``parser`` (a ``TrlParser``) builds from ``argv`` and its ``--config`` recipe; an unknown flag
    or recipe key is ``parser.error`` (usage and one line, exit status 2)."""
    *parsed, unknown = parser.parse_args_and_config(args=list(argv), return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return tuple(parsed)


def _true(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y", "on")


def wants_bf16(argv: Sequence[str], default: bool = False) -> bool:
    """Whether a run asks for bf16: ``--bf16`` on the command line, else the ``--config`` recipe's ``bf16`` key,
    else ``default`` (the training arguments' own default)."""
    import yaml

    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--config")
    peek.add_argument("--bf16", nargs="?", const="true")
    known, _ = peek.parse_known_args(list(argv))
    if known.bf16 is not None:
        return _true(known.bf16)
    if known.config and os.path.isfile(known.config):
        with open(known.config, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
        if isinstance(recipe, dict) and recipe.get("bf16") is not None:
            return _true(recipe["bf16"])
    return default


def cpu_fallback_args(argv: Sequence[str], cuda_available: bool, bf16_default: bool = False) -> list[str]:
    """``argv`` plus :data:`CPU_FALLBACK_ARGS` when it asks for bf16 and there is no CUDA GPU (one warning).

    A bf16 recipe on a machine without a GPU would stop in ``TrainingArguments``; it runs on CPU in float32
    instead (bf16 CPU training is slow and lossy). ``bf16_default``: whether the training arguments use bf16 when
    neither the command line nor the recipe says (trl's ``SFTConfig``: yes; ``TrainingArguments``: no).

    >>> cpu_fallback_args(["--bf16", "true"], cuda_available=False)[-6:]
    ['--use_cpu', 'true', '--bf16', 'false', '--dtype', 'float32']
    >>> cpu_fallback_args(["--bf16", "true"], cuda_available=True)
    ['--bf16', 'true']
    """
    argv = list(argv)
    if cuda_available or not wants_bf16(argv, bf16_default):
        return argv
    logger.warning("no CUDA GPU here: training on CPU in float32 (--use_cpu true --bf16 false --dtype float32)")
    return [*argv, *CPU_FALLBACK_ARGS]
