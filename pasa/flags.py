"""One flag vocabulary for every command: old spellings rewritten before parsing (issue 12 item 4).

Every command calls :func:`rewrite_argv` on its argv before ``HfArgumentParser``/``argparse`` sees it::

    parser = make_parser(RunArgs, AgentConfig, prog="pasa run", example="pasa run --query '...'")
    args = parser.parse_args_into_dataclasses(rewrite_argv(argv, parser))

- a deprecated spelling (``--output_folder`` … see :data:`ALIASES`) becomes the new one, with one WARNING per
  old flag (the released names whose meaning is the same are accepted silently);
- a name whose meaning changed (:data:`CHANGED`) stops the command: one line naming the new flag, exit status 2.

An alias applies only when the parser knows the new name and not the old one, so a command that still defines an
old name keeps working, and one alias table serves every command. ``--output`` is the one name with two targets
(a file in ``pasa eval`` and the data builders, a folder in ``pasa index``): the first target the parser has wins.
YAML recipes go through :func:`rewrite_config_keys` the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlagAlias:
    """``old`` is accepted for the first of ``new`` the parser has; ``released``: same meaning, no warning."""

    old: str
    new: tuple[str, ...]
    released: bool = False


def _alias(old: str, *new: str, released: bool = False) -> FlagAlias:
    return FlagAlias(old, tuple(new), released)


# The vocabulary of COORD/issue 12 item 4 (new name <- accepted old names). Released = a flag of bytedance/pasa
# run_paper_agent.py / metrics.py or of the hyc2026/trl PPO/SFT scripts with the same meaning here.
ALIASES: tuple[FlagAlias, ...] = (
    # output folder / file
    _alias("--output_folder", "--output_dir", released=True),
    _alias("--output", "--output_file", "--output_dir"),
    _alias("--output_folder_ensemble", "--ensemble", released=True),  # released metrics.py
    # offline search index
    _alias("--index", "--search_index"),
    # dtype
    _alias("--model_dtype", "--dtype"),
    _alias("--torch_dtype", "--dtype"),
    # query file for the agent / data builders
    _alias("--queries", "--input_file"),
    # training data (SFT records, PPO queries)
    _alias("--train_files", "--dataset_name"),
    _alias("--train_file", "--dataset_name"),
    # the model being trained
    _alias("--sft_model_path", "--model_name_or_path", released=True),  # released PPO: the policy's start
    # agent models
    _alias("--crawler", "--crawler_path"),
    _alias("--selector", "--selector_path"),
    # SFT
    _alias("--max_seq_length", "--max_length", released=True),  # released trl SFTConfig
    # transformers 5 dropped warmup_ratio: warmup_steps < 1 is a ratio of the total steps (same meaning)
    _alias("--warmup_ratio", "--warmup_steps", released=True),
    # released PPO config (hyc2026/trl trl/trainer/ppo_config.py) -> SessionPPOConfig
    # released examples/scripts/ppo/ppo_tldr.py loads the VALUE model (fresh scalar head) from reward_model_path;
    # its call_selector is a stub, so it never named the selector (DESIGN §1.4)
    _alias("--reward_model_path", "--value_model_path", released=True),
    _alias("--paper_id", "--id2paper", released=True),
    _alias("--use_vm", "--use_value_bootstrap", released=True),
    _alias("--search_select_score", "--alpha_search", released=True),
    _alias("--expand_select_score", "--alpha_expand", released=True),
    _alias("--search_cost", "--c_search", released=True),
    _alias("--expand_cost", "--c_expand", released=True),
    _alias("--max_papers", "--value_papers_max", released=True),
    _alias("--warm_up_step", "--value_warmup_updates", released=True),
)

# Released names whose meaning changed: accepting them would silently run something else.
CHANGED: dict[str, str] = {
    "--value_step": "the value model reads all new papers in one batch; use --value_papers_max to cap them",
    "--whiten_rewards": "rewards are per action here; use --whiten_advantages",
}


def _is_rank0() -> bool:
    # torchrun / accelerate set RANK; each warning is printed by one process only (issue 12 item 7)
    return os.environ.get("RANK", "0") in ("", "0") and os.environ.get("LOCAL_RANK", "0") in ("", "0")


def quiet_other_ranks() -> bool:
    """In a multi-process launch (torchrun / accelerate), let only rank 0 print warnings: every other rank's logging
    goes to ERROR and Python warnings are ignored, so each warning appears once (issue 12 item 7). Returns whether
    this process is rank 0. Call it at the top of a script's ``main``."""
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


def known_flags(parser: argparse.ArgumentParser | Iterable[str]) -> set[str]:
    """The option strings a parser accepts (or the given names)."""
    if isinstance(parser, argparse.ArgumentParser):
        return set(parser._option_string_actions)  # noqa: SLF001 - argparse keeps no public list
    return set(parser)


def resolve_flag(old: str, known: set[str], aliases: Sequence[FlagAlias] = ALIASES) -> FlagAlias | None:
    """The alias that applies to ``old`` for a parser knowing ``known`` (None: leave it alone)."""
    if old in known:
        return None
    for alias in aliases:
        if alias.old == old and any(n in known for n in alias.new):
            return alias
    return None


def _target(alias: FlagAlias, known: set[str]) -> str:
    return next(n for n in alias.new if n in known)


def rewrite_argv(
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser | Iterable[str],
    aliases: Sequence[FlagAlias] = ALIASES,
    changed: Mapping[str, str] = CHANGED,
    prog: str | None = None,
) -> list[str]:
    """Return ``argv`` with every old flag spelled the new way; exit 2 on a flag whose meaning changed.

    >>> rewrite_argv(["--output_folder", "out", "--crawler_path=c"], ["--output_dir", "--crawler_path"])
    ['--output_dir', 'out', '--crawler_path=c']
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known = known_flags(parser)
    if prog is None:
        prog = parser.prog if isinstance(parser, argparse.ArgumentParser) else os.path.basename(sys.argv[0])
    out: list[str] = []
    warned: set[str] = set()
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        if not arg.startswith("--"):
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in changed and name not in known:
            print(f"{prog}: error: {name} is no longer accepted: {changed[name]}", file=sys.stderr)
            raise SystemExit(2)
        alias = resolve_flag(name, known, aliases)
        if alias is None:
            out.append(arg)
            continue
        new = _target(alias, known)
        if not alias.released and name not in warned and _is_rank0():
            logger.warning("%s is deprecated and will be removed in the next release: use %s", name, new)
        warned.add(name)
        out.append(new + eq + value)
    return out


def rewrite_config_keys(
    config: Mapping[str, object],
    parser: argparse.ArgumentParser | Iterable[str],
    aliases: Sequence[FlagAlias] = ALIASES,
    changed: Mapping[str, str] = CHANGED,
    source: str = "config",
) -> dict[str, object]:
    """The same rewrite for the keys of a YAML recipe (``{"max_seq_length": 1024}`` -> ``{"max_length": 1024}``)."""
    known = known_flags(parser)
    out: dict[str, object] = {}
    for key, value in config.items():
        flag = "--" + key
        if flag in changed and flag not in known:
            raise SystemExit(f"{source}: error: {key} is no longer accepted: {changed[flag]}")
        alias = resolve_flag(flag, known, aliases)
        if alias is None:
            out[key] = value
            continue
        new = _target(alias, known)[2:]
        if not alias.released and _is_rank0():
            logger.warning("%s: %s is deprecated and will be removed in the next release: use %s", source, key, new)
        out[new] = value
    return out


def parse_args_and_config(parser, argv: Sequence[str] | None = None, prog: str | None = None):
    """``TrlParser.parse_args_and_config`` with the vocabulary applied to ``argv`` and to the ``--config`` YAML's keys.

    The YAML is rewritten (:func:`rewrite_config_keys`) into a temporary copy that ``TrlParser`` then reads, so a
    released recipe (``max_seq_length: 1024``, ``sft_model_path: ...``) works and a changed name stops with one line.
    """
    import tempfile

    import yaml

    argv = rewrite_argv(argv, parser, prog=prog)
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            index, path = i + 1, argv[i + 1]
            break
        if arg.startswith("--config="):
            argv[i : i + 1] = ["--config", arg.split("=", 1)[1]]
            index, path = i + 1, argv[i + 1]
            break
    else:
        return parser.parse_args_and_config(argv)
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        return parser.parse_args_and_config(argv)  # trl's own error message
    config = rewrite_config_keys(config, parser, source=path)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as tmp:
        yaml.safe_dump(config, tmp)
    try:
        argv[index] = tmp.name
        return parser.parse_args_and_config(argv)
    finally:
        os.unlink(tmp.name)


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


def make_argparser(prog: str, example: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """A plain ``argparse`` parser with the same help layout as :func:`make_parser`."""
    epilog = f"example:\n  {example}" if example else None
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)
