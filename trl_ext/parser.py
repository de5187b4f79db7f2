"""The TrlParser of scripts/sft.py and scripts/ppo.py, speaking the project's one flag vocabulary (pasa.flags)."""

from __future__ import annotations

import logging

from trl import TrlParser

from pasa.flags import parse_args_and_config

logger = logging.getLogger(__name__)

# appended to the command line (the last value wins) when the recipe asks for bf16 on a machine without a GPU
CPU_FALLBACK_ARGS = ("--use_cpu", "true", "--bf16", "false", "--dtype", "float32")


class VocabularyParser(TrlParser):
    """``TrlParser`` whose ``parse_args_and_config`` first rewrites old flag names, in argv and in the ``--config``
    YAML (``--train_file`` -> ``--dataset_name``, ``--sft_model_path`` -> ``--model_name_or_path``, ...): released
    names with the same meaning pass silently, other old names with one deprecation warning, and a name whose
    meaning changed stops with one line naming the new flag (pasa/flags.py)."""

    _rewriting = False

    def parse_args_and_config(self, args=None, *rest, **kwargs):
        if self._rewriting:  # pasa.flags calls back into TrlParser with the rewritten argv
            try:
                return super().parse_args_and_config(args, *rest, **kwargs)
            except ValueError as err:
                if "support bf16" not in str(err):
                    raise
            # the GPU recipes ask for bf16; without a GPU, TrainingArguments refuses it with a traceback. Run the
            # same recipe on CPU instead, in float32 (bf16 CPU training is slow and lossy), and say so once.
            logger.warning(
                "no GPU with bf16 here: training on CPU in float32 (--use_cpu true --bf16 false --dtype float32)"
            )
            return super().parse_args_and_config([*args, *CPU_FALLBACK_ARGS], *rest, **kwargs)
        self._rewriting = True
        try:
            return parse_args_and_config(self, args, prog=self.prog)
        finally:
            self._rewriting = False
