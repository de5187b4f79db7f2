"""One PPO update of scripts/ppo.py with ``--released_behaviour true`` on a tiny random model (CPU, a few seconds).

A random model writes no actions, so nothing is found: the released trainer then re-runs the search prompts,
repeated to fill 6 sessions, in every later round (``fill_sessions``), and the post-EOS state is trained
(``bootstrap_after_eos``). The default run ends after the search round.
"""

from __future__ import annotations

import json

import pytest

from tests.fakes import load_script


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from pasa.demo import build_tiny_checkpoint, demo_papers
    from pasa.tools.paper_db import build_paper_db

    d = tmp_path_factory.mktemp("released-run")
    path = build_tiny_checkpoint(str(d / "ck"))
    build_paper_db(demo_papers(), str(d / "papers.zip"), str(d / "id2paper.json"))
    (d / "train.jsonl").write_text(
        "\n".join(json.dumps({"question": q, "answer": ["Graph Attention Networks"]}) for q in ("gnn", "rag")) + "\n"
    )
    return d, path


def run(setup, released: bool):
    import torch

    torch.set_num_threads(1)
    d, path = setup
    ppo = load_script("ppo")
    out = d / f"out-{released}"
    args = [
        "--model_name_or_path", path, "--value_model_path", path, "--use_selector", "false",
        "--dataset_name", str(d / "train.jsonl"), "--paper_db", str(d / "papers.zip"),
        "--id2paper", str(d / "id2paper.json"), "--search_index", str(d / "index"),
        "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--dtype", "float32",
        "--attn_implementation", "sdpa", "--total_episodes", "2", "--gradient_accumulation_steps", "2",
        "--response_length", "200", "--value_warmup_updates", "0", "--save_steps", "0", "--report_to", "none",
        "--seed", "0", "--released_behaviour", str(released).lower(),
    ]  # fmt: skip
    script_args, cfg = ppo.make_parser().parse_args_and_config(args=args)
    trainer = ppo.run(script_args, cfg)
    (log,) = [h for h in trainer.state.log_history if "env/actions" in h]
    return cfg, log


def test_released_run_fills_every_round(setup):
    cfg, log = run(setup, released=True)
    assert cfg.fill_sessions and cfg.bootstrap_after_eos and cfg.response_length_is_total
    assert [log[f"env/sessions_round_{r}"] for r in range(3)] == [2.0, 6.0, 6.0]
    assert log["env/failed_calls"] == 0


def test_default_run_stops_when_nothing_is_found(setup):
    cfg, log = run(setup, released=False)
    assert not cfg.fill_sessions
    assert log["env/sessions_round_0"] == 2.0 and log["env/sessions_round_1"] == 0.0
