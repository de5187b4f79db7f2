"""``SFTConfig`` for scripts/sft.py: trl's, with activation checkpointing under its current transformers name.

trl sets the old name (``gradient_checkpointing=True``), which transformers 5 treats as a deprecated alias of
``activation_checkpointing`` and warns about on every run. Here the old name defaults to unset, and when it is given
(the released recipes, trl 0.12) its value is used for ``activation_checkpointing``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig


@dataclass
class CheckpointedSFTConfig(SFTConfig):
    activation_checkpointing: bool | None = field(
        default=True, metadata={"help": "Recompute activations in the backward pass to save memory (paper: on)."}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "The older name of --activation_checkpointing (released recipes)."}
    )

    def __post_init__(self):
        if self.gradient_checkpointing is not None:
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()
