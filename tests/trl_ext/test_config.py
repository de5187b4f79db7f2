"""trl_ext.config: the released_behaviour switch and the 8-GPU recipe's batch per update."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.fakes import load_script
from trl_ext.config import SessionPPOConfig
from trl_ext.released import RELEASED_PPO_VALUES

ROOT = Path(__file__).resolve().parents[2]
RELEASED_GPUS, RELEASED_LOCAL_QUERIES, RELEASED_EXPAND = 16, 4, 6  # DESIGN §1.4: 16 x (4 + 6 + 6)


def parse_recipe(name: str, *extra: str) -> SessionPPOConfig:
    _, cfg = load_script("ppo").parse_args(
        ["--config", str(ROOT / "configs" / "recipes" / name), "--bf16", "false", *extra]
    )
    return cfg


def sessions_per_process(cfg: SessionPPOConfig) -> int:
    """Upper bound of one process's sessions per update: its search sessions + expand_top_k per later round."""
    return cfg.local_queries_per_update + (cfg.rounds - 1) * cfg.expand_top_k


def test_8gpu_recipe_keeps_the_released_update():
    released = parse_recipe("ppo_crawler.yaml")
    cfg = parse_recipe("ppo_crawler_8gpu.yaml")
    # 64 user queries per update on 8 processes, as the released 16 x 4
    assert released.local_queries_per_update * RELEASED_GPUS == 64
    assert cfg.local_queries_per_update * 8 == 64
    # the same sessions per update: 8 x (8 + 12 + 12) = 16 x (4 + 6 + 6) = 256
    assert sessions_per_process(released) == RELEASED_LOCAL_QUERIES + 2 * RELEASED_EXPAND == 16
    assert sessions_per_process(cfg) * 8 == sessions_per_process(released) * RELEASED_GPUS == 256
    # the same optimizer steps per PPO epoch (sessions / (micro-batch x accumulation)), each over 64 sessions
    steps = sessions_per_process(cfg) // (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps)
    released_steps = sessions_per_process(released) // (
        released.per_device_train_batch_size * released.gradient_accumulation_steps
    )
    assert steps == released_steps == 4
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 64
    # 250 updates (the trainer: ceil(total_episodes / (local queries x processes))), warm-up 50 of them
    assert math.ceil(cfg.total_episodes / (cfg.local_queries_per_update * 8)) == 250
    assert cfg.value_warmup_updates == released.value_warmup_updates == 50
    # everything else is the released recipe
    same = ("learning_rate", "rounds", "response_length", "num_ppo_epochs", "kl_coef", "vf_coef", "gamma1")
    assert all(getattr(cfg, k) == getattr(released, k) for k in same)


def test_released_behaviour_flag_on_the_script(tmp_path):
    cfg = parse_recipe("ppo_crawler.yaml", "--released_behaviour", "true", "--output_dir", str(tmp_path))
    assert cfg.released_behaviour
    assert all(getattr(cfg, k) == v for k, v in RELEASED_PPO_VALUES.items())
    assert parse_recipe("ppo_crawler.yaml").bootstrap_after_eos is False


def test_unknown_value_papers_rule_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="value_papers_rule"):
        SessionPPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", value_papers_rule="random")
