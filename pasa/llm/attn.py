"""Attention implementation for loading a model: flash-attention when it can run, else sdpa with one warning.

The released recipes ask for ``flash_attention_2``; flash-attn is a GPU extra (``pip install -e .[gpu]``), so a
machine without it (or without a CUDA GPU) would stop at ``from_pretrained``. Every model loader of the project
(``pasa.llm.hf``, ``scripts/sft.py``, ``scripts/ppo.py``) passes its request through here instead.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

FLASH = ("flash_attention_2", "flash_attention_3")
FALLBACK = "sdpa"
_warned: set[str] = set()


def flash_attention_unavailable(name: str) -> str | None:
    """Why ``name`` (a flash-attention implementation) cannot run here, or None when it can."""
    import torch
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    available = is_flash_attn_3_available() if name == "flash_attention_3" else is_flash_attn_2_available()
    if not available:
        return "the flash-attn package is not installed (GPU extra: pip install -e '.[gpu]')"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def resolve_attn_implementation(requested: str | None) -> str | None:
    """``requested`` unless it is a flash-attention implementation that cannot run here; then ``'sdpa'``.

    Logs one WARNING per process and requested name. None (the model's default) and 'sdpa'/'eager' pass through.
    """
    if requested not in FLASH:
        return requested
    reason = flash_attention_unavailable(requested)
    if reason is None:
        return requested
    if requested not in _warned:
        _warned.add(requested)
        logger.warning("attn_implementation=%s is not usable: %s; using %s instead", requested, reason, FALLBACK)
    return FALLBACK
