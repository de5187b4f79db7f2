"""SFT and session PPO under DeepSpeed ZeRO-3 on two CPU processes (configs/accelerate/deepspeed_zero3_cpu.yaml).

Each test launches the real scripts (``accelerate launch`` -> torchrun, gloo, DeepSpeed's CPU accelerator) through
scripts/train_*.sh, or, where an assertion depends on what the rollout contains, ``tests/scripts/scripted_ppo.py``
(scripts/ppo.py with scripted crawler replies), and kills its workers on timeout. What is shown: the runs finish and save a 16-bit-gathered policy
that ``from_pretrained`` loads and the agent runs; resuming from a ZeRO-3 checkpoint reproduces the uninterrupted
run; the value head is initialised on the gathered tensor; and one PPO update / a few SFT steps on 2 processes
under ZeRO-3 equal the same work on 1 process without DeepSpeed.

Tolerances. Both sides compute in float32 on the same CPU with the same seeds, data and per-session sampling seeds
(``local_rollout_forward_batch_size=1``), so rollouts are identical token for token. Only the order of float
additions differs: DeepSpeed averages the two ranks' gradients by reduce-scatter and computes the clipping norm from
partitions, where one process sums its micro-batches; these differ in the last bits (~1e-7 relative). Adam's first
step moves each weight by about lr * sign(grad), so a weight whose gradient is ~0 up to that noise can move by up to
2 * lr differently; the weights are compared at rtol 1e-4 / atol 1e-6 for all but a few such entries (at most 0.1%
of the weights may differ, by at most 2 * lr), losses at rtol 1e-4.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from tests.fakes import load_script
from tests.scripts.scripted_ppo import ScriptedRepliesTrainer
from tests.scripts.test_ppo import QUERIES, smoke_args
from tests.scripts.test_sft import CPU_ARGS, TRAIN_CHAT, run_with_timeout

ROOT = Path(__file__).resolve().parents[2]
ZERO3_CPU = "configs/accelerate/deepspeed_zero3_cpu.yaml"
RECIPE = ["--config", str(ROOT / "configs" / "recipes" / "ppo_crawler.yaml")]
LAUNCH_TIMEOUT = 420

pytestmark = pytest.mark.slow  # ~5 min in all on 2 cores; `python -m pytest -q` (CI) runs them

ppo = load_script("ppo")
sft = load_script("sft")


@pytest.fixture(scope="module", autouse=True)
def shared_memory_comm_op_built():
    """DeepSpeed's CPU shared-memory comm op, compiled once in this process before any launch (into this session's
    TORCH_EXTENSIONS_DIR, tests/conftest.py): the launched ranks then load it. Compiled by two ranks at once, a
    compile cut short (a rank stopped by its peer or the launcher) left its lock file, and every later launch of the
    session waited on that lock until the test's timeout."""
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        builder.load()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, args: list[str], out: Path, cwd: Path, config: str = ZERO3_CPU) -> str:
    """Run ``scripts/<script>`` with ``ACCELERATE_CONFIG=config``; return stdout+stderr, fail with them on error.

    ``scripted_ppo.py`` is ``scripts/ppo.py`` with scripted crawler replies, launched with ``accelerate launch``
    on the recipe as ``scripts/train_ppo_crawler.sh`` does."""
    port = str(_free_port())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HOME": str(cwd / "hf"),
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "ACCELERATE_CONFIG": config,
        "MAIN_PROCESS_PORT": port,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(ROOT / "scripts" / script), *args]
    if script == "scripted_ppo.py":
        cmd = [
            "accelerate", "launch", "--config_file", str(ROOT / config), "--main_process_port", port,
            str(ROOT / "tests" / "scripts" / script), *RECIPE, *args,
        ]  # fmt: skip
    stdout, stderr, code = run_with_timeout(cmd, str(out), timeout=LAUNCH_TIMEOUT, cwd=cwd, env=env)
    assert code == 0, stdout[-3000:] + stderr[-5000:]
    return stdout + stderr


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def assert_weights_close(a: dict, b: dict, lr: float) -> None:
    import torch

    assert set(a) == set(b)
    total = differing = 0
    for k in a:
        close = torch.isclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-6)
        diff = (a[k].float() - b[k].float()).abs()[~close]
        assert diff.numel() == 0 or diff.max().item() <= 2 * lr * 1.01, (k, diff.max().item())
        total += close.numel()
        differing += int((~close).sum())
    assert differing <= max(1, total // 1000), (differing, total)


def agent_runs_on(path: Path) -> None:
    """The saved checkpoint drives the agent on the demo paper world (policy as crawler and selector)."""
    from pasa.agent import AgentConfig, PaperAgent
    from pasa.crawler import Crawler
    from pasa.demo import demo_papers
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.selector import Selector
    from pasa.tools.sources import InMemoryPaperSource

    llm = HFLLM(HFLLMConfig(str(path), max_new_tokens=24, device="cpu"))
    agent = PaperAgent(
        Crawler(llm), Selector(llm), InMemoryPaperSource(demo_papers()), AgentConfig(expand_layers=1, threads_num=1)
    )
    root = agent.run(QUERIES[0][0])
    tree = json.loads(json.dumps(root.to_dict()))  # the released JSON shape, serialisable
    assert list(tree) == [
        "title",
        "arxiv_id",
        "depth",
        "child",
        "abstract",
        "sections",
        "source",
        "select_score",
        "extra",
    ]
    assert tree["title"] == QUERIES[0][0] and set(tree["extra"]["failures"]) >= {"search", "crawler_no_action"}
    # every paper the loaded model scored got a probability (the selector forward ran on the saved weights)
    nodes = [n for papers in tree["child"].values() for n in papers]
    assert all(0.0 <= n["select_score"] <= 1.0 for n in nodes)


# -- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def taught(tmp_path_factory) -> str:
    """A tiny crawler checkpoint (its replies in the PPO runs below are scripted)."""
    from pasa.demo import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("zero-crawler")))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    from pasa.demo import demo_papers
    from pasa.tools.paper_db import build_paper_db

    d = tmp_path_factory.mktemp("zero-data")
    build_paper_db(demo_papers(), str(d / "papers.zip"), str(d / "id2paper.json"))
    lines = [json.dumps({"question": q, "answer": a}) for q, a in QUERIES]
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "train_file": str(d / "train.jsonl"),
        "paper_db": str(d / "papers.zip"),
        "id2paper": str(d / "id2paper.json"),
    }


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory, data) -> dict[str, str]:
    """Four queries, one pass per update: one can find papers, three have an end date before every paper. With
    scripted replies, the process holding the first opens expand sessions each update and the other none."""
    d = tmp_path_factory.mktemp("zero-uneven")
    lines = [json.dumps({"question": QUERIES[0][0], "answer": QUERIES[0][1]})]
    lines += [
        json.dumps(
            {
                "question": f"{QUERIES[1][0]} {i}",
                "answer": QUERIES[1][1],
                "source_meta": {"published_time": "19000108"},
            }
        )
        for i in range(3)
    ]
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    return {**data, "train_file": str(d / "train.jsonl")}


# -- PPO ----------------------------------------------------------------------------------------------------------
def test_ppo_zero3_runs_saves_resumes_and_the_policy_drives_the_agent(taught, uneven_data, tmp_path):
    data = uneven_data
    out = tmp_path / "run"
    args = [*smoke_args(taught, data, out, episodes=8), "--use_end_date", "true"]
    log = launch("scripted_ppo.py", args, out, tmp_path / "a")
    assert "2 process(es), 2 updates of 4 queries x 3 rounds" in log
    assert "value warm-up: none" in log
    for ckpt in ("checkpoint-1", "checkpoint-2"):
        assert (out / ckpt / "model.safetensors").exists() and (out / ckpt / "train_state").is_dir()
    before, after = load_weights(Path(taught)), load_weights(out)
    assert set(after) == set(before) and all(after[k].shape == before[k].shape for k in after)  # gathered, full
    assert any((after[k] - before[k]).abs().max() > 0 for k in after)
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history] == [1, 2]
    # the processes had different numbers of sessions: the idler one joined every collective forward of the busier
    assert any(h["env/sessions_min_process"] < h["env/sessions_max_process"] for h in history)
    for key in ("loss/policy", "loss/value", "val/returns_std", "val/advantages_mean", "env/reward_per_session"):
        assert key in history[-1], key

    # resume from the first ZeRO-3 checkpoint: update 2 runs again and gives the same policy (seeded rollouts)
    resumed = tmp_path / "resumed"
    args = [*smoke_args(taught, data, resumed, episodes=8), "--use_end_date", "true"]
    args += ["--resume_from_checkpoint", str(out / "checkpoint-1")]
    log = launch("scripted_ppo.py", args, resumed, tmp_path / "b")
    assert f"resumed from {out / 'checkpoint-1'} at update 2" in log
    again = load_weights(resumed)
    assert all((again[k] - after[k]).abs().max().item() <= 1e-6 for k in after)
    agent_runs_on(resumed)


@pytest.mark.parametrize(
    "config", ["configs/accelerate/deepspeed_zero2_cpu.yaml", "configs/accelerate/deepspeed_zero3_offload_cpu.yaml"]
)
def test_ppo_runs_under_zero2_and_zero3_with_cpu_offload(taught, data, tmp_path, config):
    from pasa.llm.hf import HFLLM, HFLLMConfig

    out = tmp_path / "run"
    log = launch("train_ppo_crawler.sh", smoke_args(taught, data, out, episodes=4), out, tmp_path / "a", config=config)
    assert "2 process(es), 1 updates of 4 queries x 3 rounds" in log
    before, after = load_weights(Path(taught)), load_weights(out)
    assert set(after) == set(before) and all(after[k].shape == before[k].shape for k in after)
    assert any((after[k] - before[k]).abs().max() > 0 for k in after)
    assert HFLLM(HFLLMConfig(str(out), max_new_tokens=4, device="cpu")).generate(["hi"]) != []


def equivalence_args(taught, data, out, accumulation: int) -> list[str]:
    """One update of 2 user queries, one round, one PPO epoch, no whitening (it is per process): on 1 process
    2 micro-batches of 1 session, on 2 processes 1 each; the same global batch either way."""
    return [
        *smoke_args(taught, data, out, episodes=2),
        "--rounds", "1", "--num_ppo_epochs", "1", "--whiten_advantages", "false",
        "--local_rollout_forward_batch_size", "1", "--gradient_accumulation_steps", str(accumulation),
        "--learning_rate", "1e-4",
    ]  # fmt: skip


def test_first_ppo_update_matches_between_one_process_and_zero3(taught, data, tmp_path):
    import torch

    torch.set_num_threads(1)
    single = tmp_path / "single"
    script_args, cfg = ppo.parse_args([*RECIPE, *equivalence_args(taught, data, single, accumulation=2)])
    trainer = ppo.run(script_args, cfg, ScriptedRepliesTrainer)
    assert not trainer.is_deepspeed_enabled and trainer.world_size == 1
    one = [h for h in trainer.state.log_history if "loss/value" in h][-1]

    zero = tmp_path / "zero3"
    launch("scripted_ppo.py", equivalence_args(taught, data, zero, accumulation=1), zero, tmp_path / "z")
    two = json.loads((zero / "checkpoint-1" / "trainer_state.json").read_text())["log_history"][-1]
    for key in ("env/reward_per_session", "env/reply_tokens", "env/actions"):  # identical rollouts
        assert one[key] == two[key], key
    for key in ("objective/kl", "loss/policy", "loss/value", "val/returns_mean", "policy/approx_kl"):
        assert one[key] == pytest.approx(two[key], rel=1e-4, abs=1e-6), key
    a, b = load_weights(single), load_weights(zero)
    print("PPO: max weight difference", max((a[k] - b[k]).abs().max().item() for k in a))
    print("PPO: loss differences", {k: abs(one[k] - two[k]) for k in ("loss/policy", "loss/value", "objective/kl")})
    assert_weights_close(a, b, lr=1e-4)


def test_value_head_is_initialised_on_the_gathered_tensor_under_zero3(taught, tmp_path):
    """Under ZeRO-3 the head loads as an empty shard; its init must act on the gathered tensor."""
    import torch

    out = tmp_path / "probe"
    probe = ROOT / "tests" / "scripts" / "zero3_value_head_probe.py"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
    }
    cmd = [
        "accelerate", "launch", "--config_file", str(ROOT / ZERO3_CPU), "--main_process_port", str(_free_port()),
        str(probe), "--model_name_or_path", taught, "--output_dir", str(out), "--value_head_init_std", "0.5",
        "--seed", "3", "--use_cpu", "true", "--bf16", "false", "--dtype", "float32", "--use_selector", "false",
    ]  # fmt: skip
    stdout, stderr, code = run_with_timeout(cmd, str(out), timeout=LAUNCH_TIMEOUT, cwd=tmp_path, env=env)
    assert code == 0, stdout[-3000:] + stderr[-5000:]
    saved = torch.load(out / "head.pt")
    assert saved["partitioned"]  # the probe saw an empty local shard: ZeRO-3 really partitioned the head
    weight = saved["weight"]
    torch.manual_seed(3)
    expected = torch.nn.init.normal_(torch.empty_like(weight), mean=0.0, std=0.5)
    torch.testing.assert_close(weight, expected)  # the intended N(0, 0.5) draw, same on every process
    assert 0.3 < weight.std().item() < 0.7  # not the checkpoint-default init (std 0.02)


# -- SFT ----------------------------------------------------------------------------------------------------------
# 8 examples, so that batches of 4 (1 process) and 2 x 2 (2 processes) cover the same examples every step
EIGHT = [
    "--dataset_name",
    TRAIN_CHAT,
    str(ROOT / "tests/fixtures/sft/prompt_completion.jsonl"),
    "--max_train_samples",
    "8",
]


def sft_args(model: str, out: Path, batch: int, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", model, "--output_dir", str(out), *EIGHT,
        "--attn_implementation", "sdpa", "--use_cpu", "true", "--logging_steps", "1", "--learning_rate", "1e-3",
        "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--gradient_checkpointing", "false",
        "--per_device_train_batch_size", str(batch), "--seed", "0", *CPU_ARGS, *extra,
    ]  # fmt: skip


def test_sft_zero3_resumes_exactly_and_the_model_drives_the_agent(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    args = sft_args(tiny_checkpoint, out, 2, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2")
    log = launch("train_sft_crawler.sh", args, out, tmp_path / "a")
    assert "2 process(es)" in log and (out / "checkpoint-2").is_dir()
    resumed = tmp_path / "resumed"
    args = sft_args(
        tiny_checkpoint, resumed, 2, "--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")
    )
    launch("train_sft_crawler.sh", args, resumed, tmp_path / "b")
    a, b = load_weights(out), load_weights(resumed)
    assert all((a[k] - b[k]).abs().max().item() <= 1e-6 for k in a)
    agent_runs_on(resumed)


def test_sft_steps_match_between_one_process_and_zero3(tiny_checkpoint, tmp_path):
    import torch

    torch.set_num_threads(1)
    single = tmp_path / "single"
    argv = sft_args(tiny_checkpoint, single, 4, "--max_steps", "3", "--report_to", "none")
    script_args, training_args, model_args = sft.parse_args(argv)
    trainer = sft.build_trainer(script_args, training_args, model_args)
    trainer.train()
    trainer.save_model(str(single))
    one = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    zero = tmp_path / "zero3"
    args = sft_args(tiny_checkpoint, zero, 2, "--max_steps", "3", "--save_strategy", "steps", "--save_steps", "3")
    launch("train_sft_crawler.sh", args, zero, tmp_path / "z")
    history = json.loads((zero / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    two = [h["loss"] for h in history if "loss" in h]  # exact values (stdout rounds to 4 digits)
    assert len(one) == len(two) == 3
    assert one == pytest.approx(two, rel=1e-5)
    a, b = load_weights(single), load_weights(zero)
    print("SFT: losses", one, two, "max weight difference", max((a[k] - b[k]).abs().max().item() for k in a))
    assert_weights_close(a, b, lr=1e-3)
