"""The TrlParser of scripts/sft.py and scripts/ppo.py, speaking the project's one flag vocabulary (pasa.flags)."""

from __future__ import annotations

from trl import TrlParser

from pasa.flags import parse_args_and_config


class VocabularyParser(TrlParser):
    """``TrlParser`` whose ``parse_args_and_config`` first rewrites old flag names, in argv and in the ``--config``
    YAML (``--train_file`` -> ``--dataset_name``, ``--sft_model_path`` -> ``--model_name_or_path``, ...): released
    names with the same meaning pass silently, other old names with one deprecation warning, and a name whose
    meaning changed stops with one line naming the new flag (pasa/flags.py)."""

    _rewriting = False

    def parse_args_and_config(self, args=None, *rest, **kwargs):
        if self._rewriting:  # pasa.flags calls back into TrlParser with the rewritten argv
            return super().parse_args_and_config(args, *rest, **kwargs)
        self._rewriting = True
        try:
            return parse_args_and_config(self, args, prog=self.prog)
        finally:
            self._rewriting = False
