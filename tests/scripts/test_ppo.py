"""scripts/ppo.py: CPU smoke runs of the session-level PPO on a tiny paper DB, in process and on two processes.

Rollouts that the assertions depend on use scripted crawler replies (``tests/scripts/scripted_ppo.py``): search
sessions search the user query, expand sessions expand the paper's first section, so actions, stops and expansions
happen by construction, whatever a tiny policy would sample on this machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import load_script
from tests.scripts.scripted_ppo import ScriptedRepliesTrainer

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ["--config", str(ROOT / "configs" / "recipes" / "ppo_crawler.yaml")]
QUERIES = [
    ("graph neural networks", ["Graph Attention Networks", "A Comprehensive Survey on Graph Neural Networks"]),
    (
        "retrieval augmented generation",
        [
            "Dense Passage Retrieval for Open-Domain Question Answering",
            "REALM: Retrieval-Augmented Language Model Pre-Training",
        ],
    ),
]


ppo = load_script("ppo")


@pytest.fixture(scope="module")
def tiny_crawler(tmp_path_factory) -> str:
    from pasa.demo import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny-crawler")))


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory) -> dict[str, str]:
    from pasa.demo import demo_papers
    from pasa.tools.paper_db import build_paper_db

    d = tmp_path_factory.mktemp("ppo-data")
    build_paper_db(demo_papers(), str(d / "papers.zip"), str(d / "id2paper.json"))
    train = d / "train.jsonl"
    lines = [
        json.dumps({"question": q, "answer": a, "source_meta": {"published_time": "20250101"}}) for q, a in QUERIES
    ]
    train.write_text("\n".join(lines + ['{"question": "bad record", "answer": "not a list"}']) + "\n")
    return {"train_file": str(train), "paper_db": str(d / "papers.zip"), "id2paper": str(d / "id2paper.json")}


def smoke_args(checkpoint: str, data: dict[str, str], out: Path, episodes: int) -> list[str]:
    """Recipe overrides for a tiny CPU run (the launch script adds ``--config``; in process add it yourself)."""
    return [
        "--model_name_or_path", checkpoint, "--value_model_path", checkpoint, "--selector_path", checkpoint,
        "--dataset_name", data["train_file"], "--paper_db", data["paper_db"], "--id2paper", data["id2paper"],
        "--search_index", str(out / "index"),
        "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--dtype", "float32",
        "--attn_implementation", "sdpa", "--total_episodes", str(episodes), "--gradient_accumulation_steps", "2",
        "--response_length", "24", "--value_warmup_updates", "0", "--learning_rate", "1e-3", "--save_steps", "1",
        "--selector_batch_size", "4", "--seed", "2", "--search_papers_kept", "2",
    ]  # fmt: skip


def test_recipe_carries_the_released_launch_values():
    script_args, cfg = ppo.parse_args(
        ["--config", str(ROOT / "configs" / "recipes" / "ppo_crawler.yaml"), "--bf16", "false"]
    )
    assert script_args.dataset_name == "data/AutoScholarQuery/train.jsonl"
    assert (cfg.learning_rate, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (1e-6, 1, 4)
    assert (cfg.total_episodes, cfg.rounds, cfg.response_length, cfg.num_ppo_epochs) == (16000, 3, 1024, 2)
    assert (cfg.alpha_search, cfg.alpha_expand, cfg.c_search, cfg.c_expand) == (1.5, 1.5, 0.1, 0.1)
    assert (cfg.gamma1, cfg.kl_coef, cfg.vf_coef, cfg.gamma, cfg.lam) == (0.1, 0.1, 10.0, 1.0, 0.95)
    assert (cfg.value_warmup_updates, cfg.expand_top_k, cfg.value_papers_max, cfg.reward_clip_max) == (50, 6, 5, 5.0)
    assert cfg.use_selector and cfg.use_value_bootstrap and not cfg.online and cfg.save_steps == 10


def test_load_queries_skips_bad_records(paper_data, caplog):
    queries = ppo.load_queries(paper_data["train_file"])
    assert [q["question"] for q in queries] == [q for q, _ in QUERIES]
    assert queries[0]["end_date"] == "20241225"
    assert "not a list of titles" in caplog.text


def test_ppo_smoke_run_in_process(tiny_crawler, paper_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    from pasa.llm.hf import HFLLM, HFLLMConfig

    torch.set_num_threads(1)
    out = tmp_path / "out"
    script_args, cfg = ppo.parse_args([*RECIPE, *smoke_args(tiny_crawler, paper_data, out, episodes=4)])
    trainer = ppo.run(script_args, cfg, ScriptedRepliesTrainer)
    logs = [h for h in trainer.state.log_history if "env/reward_per_session" in h]
    assert len(logs) == 2 and trainer.num_updates == 2
    # every round ran: expand sessions came out of the search round and out of the first expand round
    for r in range(3):
        assert sum(h[f"env/sessions_round_{r}"] for h in logs) > 0, r
    assert any(h["env/reward_per_session"] != 0 for h in logs)
    assert all(h["env/actions"] > 0 and h["env/stops"] > 0 for h in logs)
    for key in ("objective/kl", "policy/approx_kl", "policy/clipfrac", "loss/policy", "loss/value",
                "val/explained_variance", "env/new_papers", "env/relevant_papers", "env/recall"):  # fmt: skip
        assert key in logs[-1], key
    # the policy and the value model were trained; only the policy is saved, in HF format
    before = load_file(os.path.join(tiny_crawler, "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert set(after) <= set(before) and any(not torch.equal(before[k], after[k]) for k in after)
    value = trainer.accelerator.unwrap_model(trainer.model).value_model
    backbone = {f"model.{k}": v for k, v in value.model.state_dict().items()}
    shared = [k for k in backbone if k in before]
    assert shared and any(not torch.equal(before[k], backbone[k]) for k in shared)  # the value backbone moved
    assert not any("score" in k or "value" in k for k in after)
    assert (out / "checkpoint-1" / "model.safetensors").exists()
    assert (out / "checkpoint-1" / "train_state").is_dir()
    llm = HFLLM(HFLLMConfig(str(out), max_new_tokens=8, device="cpu"))
    assert len(llm.generate(["hello"])) == 1

    # resume from the first checkpoint: only the second update runs again
    resumed_out = tmp_path / "resumed"
    args = [*RECIPE, *smoke_args(tiny_crawler, paper_data, resumed_out, episodes=4)]
    args += ["--resume_from_checkpoint", str(out / "checkpoint-1")]
    script_args, cfg = ppo.parse_args(args)
    resumed = ppo.run(script_args, cfg, ScriptedRepliesTrainer)
    assert [h["step"] for h in resumed.state.log_history if "env/actions" in h] == [1, 2]  # 1 restored, 2 new
    assert (resumed_out / "model.safetensors").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ppo_launch_script_two_cpu_processes(tiny_crawler, paper_data, tmp_path):
    """scripts/train_ppo_crawler.sh on two CPU processes (torchrun + gloo: `accelerate launch --cpu
    --num_processes 2` alone starts one process in accelerate 1.x, see configs/accelerate/cpu_2proc.yaml)."""
    from pasa.llm.hf import HFLLM, HFLLMConfig

    out = tmp_path / "out"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_CONFIG": "configs/accelerate/cpu_2proc.yaml",
        "MAIN_PROCESS_PORT": str(_free_port()),
    }
    cmd = ["bash", str(ROOT / "scripts" / "train_ppo_crawler.sh"), *smoke_args(tiny_crawler, paper_data, out, 4)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es), 1 updates of 4 queries x 3 rounds" in proc.stdout
    assert "env/reward_per_session" in proc.stdout + proc.stderr
    assert (out / "model.safetensors").exists()
    assert HFLLM(HFLLMConfig(str(out), max_new_tokens=4, device="cpu")).generate(["hi"]) != []


def test_released_flag_names_are_renamed_and_others_rejected(capsys):
    """The released PPO flags (RELEASED_FLAGS) parse as the flags with the same meaning; a released name whose
    meaning changed (whitening is of advantages here, --whiten_advantages) is an argparse error of one line."""
    released = [
        "--dataset_name", "q.jsonl", "--sft_model_path", "sft", "--reward_model_path", "value", "--paper_id", "ids.json",
        "--use_vm", "false", "--warm_up_step", "7", "--search_select_score", "2.5", "--expand_cost", "0.3",
        "--bf16", "false",
    ]  # fmt: skip
    script_args, cfg = ppo.parse_args([*RECIPE, *released])
    assert script_args.dataset_name == "q.jsonl" and cfg.model_name_or_path == "sft"
    assert (cfg.value_model_path, cfg.id2paper, cfg.use_value_bootstrap, cfg.value_warmup_updates) == (
        "value", "ids.json", False, 7,
    )  # fmt: skip
    assert (cfg.alpha_search, cfg.c_expand) == (2.5, 0.3)
    assert set(ppo.RELEASED_FLAGS.values()) <= {a.option_strings[0] for a in ppo.make_parser()._actions}
    with pytest.raises(SystemExit) as stop:
        ppo.parse_args(["--whiten_rewards", "true", "--bf16", "false"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unrecognized arguments: --whiten_rewards true" in err[-1]


def test_bf16_recipe_without_cuda_runs_on_cpu_in_float32(caplog):
    from trl_ext.parser import cpu_fallback_args

    argv = cpu_fallback_args(RECIPE, cuda_available=False)  # the recipe says bf16: true
    assert "no CUDA GPU" in caplog.text
    _, cfg = ppo.make_parser().parse_args_and_config(args=argv)
    assert (cfg.use_cpu, cfg.bf16, cfg.dtype) == (True, False, "float32")
    assert cpu_fallback_args([*RECIPE, "--bf16", "false"], cuda_available=False) == [*RECIPE, "--bf16", "false"]
    assert cpu_fallback_args(RECIPE, cuda_available=True) == RECIPE


def test_warmup_banner():
    assert ppo.warmup_banner(50, 250) == [
        "value warm-up: policy frozen for updates 1-50 (value loss only), policy trained from update 51"
    ]
    short = ppo.warmup_banner(50, 2)
    assert len(short) == 2 and "the saved policy will be the SFT policy" in short[1]
    assert ppo.warmup_banner(0, 2) == ["value warm-up: none (policy trained from update 1)"]


def test_run_inside_the_warmup_saves_the_sft_policy(tiny_crawler, paper_data, tmp_path, capsys):
    """Value-only updates leave the policy exactly as it was, and the run says so."""
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    out = tmp_path / "out"
    args = [*RECIPE, *smoke_args(tiny_crawler, paper_data, out, episodes=2)]
    args += ["--value_warmup_updates", "5", "--rounds", "1", "--save_steps", "0"]
    script_args, cfg = ppo.parse_args(args)
    trainer = ppo.run(script_args, cfg)
    printed = capsys.readouterr().out
    assert "policy frozen for updates 1-5" in printed and "the saved policy is the SFT policy" in printed
    before, after = (
        load_file(os.path.join(tiny_crawler, "model.safetensors")),
        load_file(str(out / "model.safetensors")),
    )
    assert all(torch.equal(before[k], after[k]) for k in after)
    logs = [h for h in trainer.state.log_history if "loss/value" in h]
    assert logs[-1]["policy/loss_on"] == 0.0 and logs[-1]["loss/value"] > 0


def test_value_model_loads_without_a_missing_weights_report(tiny_crawler, caplog, capsys):
    """The new scalar head is missing from the SFT checkpoint by design: no load report about it, no warning."""
    from transformers import AutoModelForSequenceClassification

    with caplog.at_level("WARNING"):
        model = ppo.load_value_model(AutoModelForSequenceClassification, tiny_crawler)
    out = capsys.readouterr()
    assert model.config.num_labels == 1
    assert "MISSING" not in out.out + out.err and "score.weight" not in caplog.text


def test_value_model_names_weights_that_did_not_load(tiny_crawler, tmp_path, caplog):
    """A checkpoint whose weights do not match the value model is one WARNING naming them."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    broken = tmp_path / "broken"
    shutil.copytree(tiny_crawler, broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in weights if "layers.0.mlp" in k)
    del weights[dropped]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with caplog.at_level("WARNING"):
        ppo.load_value_model(AutoModelForSequenceClassification, str(broken))
    assert "weights not loaded as expected" in caplog.text and "layers.0.mlp" in caplog.text
