"""scripts/plan_memory.py (memory plan from DeepSpeed's estimators) and the multi-node launch arguments."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.fakes import load_script

ROOT = Path(__file__).resolve().parents[2]
plan_memory = load_script("plan_memory")


def test_known_shapes_give_the_published_parameter_counts():
    # Qwen2.5-7B-Instruct: 7.62 B parameters (model card: 7.61 B); 1.5B: 1.54 B with tied embeddings
    assert plan_memory.load_shape("qwen2.5-7b", None).causal_lm_params == pytest.approx(7.62e9, rel=2e-3)
    assert plan_memory.load_shape("qwen2.5-1.5b", None).causal_lm_params == pytest.approx(1.54e9, rel=5e-3)


def test_config_json_is_read(tiny_checkpoint):
    shape = plan_memory.load_shape("ignored", os.path.join(tiny_checkpoint, "config.json"))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    assert shape.causal_lm_params == sum(p.numel() for p in model.parameters())


def test_model_states_are_deepspeeds_estimate():
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    rows = plan_memory.plan(plan_memory.make_parser().parse_args(["--micro_batch", "1"]))
    shape = plan_memory.load_shape("qwen2.5-7b", None)
    trained = shape.causal_lm_params + shape.value_params
    _, gpu, _ = estimate_zero3_model_states_mem_needs(trained, shape.largest_layer_params, 8, 1, False, False)
    assert rows[0][1] == pytest.approx(gpu / 1e9)


@pytest.mark.parametrize(
    ("argv", "fits"),
    [
        (["--num_nodes", "2"], True),  # the released 2 x 8 x 80 GB
        (["--num_gpus", "8", "--gpu_memory_gb", "24"], False),
        (["--num_gpus", "2", "--gpu_memory_gb", "24", "--offload_optimizer", "--offload_param"], False),
        (["--recipe", "sft"], True),
    ],
)
def test_exit_status_says_whether_it_fits(argv, fits, capsys):
    assert plan_memory.main(argv) == (0 if fits else 1)
    out = capsys.readouterr().out
    assert "peak per GPU" in out and ("fits" if fits else "DOES NOT FIT") in out


def test_offload_param_needs_offload_optimizer():
    with pytest.raises(SystemExit):
        plan_memory.main(["--offload_param"])


# -- multi-node launch ---------------------------------------------------------------------------------------------
def accelerate_args(argv: list[str]):
    """What `accelerate launch <argv>` would hand to torchrun, without starting anything."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(argv)
    args, defaults, mp_from_config_flag = _validate_launch_command(args)
    # as accelerate's launch_command does before calling the DeepSpeed launcher
    fields = list(defaults.deepspeed_config.keys()) if defaults else []
    if mp_from_config_flag:
        fields.append("mixed_precision")
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    return args, env


def free_port() -> int:
    """A port no process listens on (accelerate refuses to launch rank 0 on a port in use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("rank", [0, 1])
def test_two_node_config_gives_torchrun_its_rank_arguments(rank):
    port = free_port()
    args, env = accelerate_args(
        [
            "--config_file", str(ROOT / "configs/accelerate/deepspeed_zero3_2nodes.yaml"), "--machine_rank", str(rank),
            "--main_process_ip", "10.0.0.1", "--main_process_port", str(port), "scripts/ppo.py", "--bf16", "true",
        ]
    )  # fmt: skip
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", rank, "8")
    # torchrun's rendezvous: master_addr/port, or the endpoint form accelerate uses when it does not read same_network
    endpoint = getattr(args, "rdzv_endpoint", None) or f"{args.master_addr}:{args.master_port}"
    assert endpoint == f"10.0.0.1:{port}"
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


@pytest.mark.parametrize(
    "name", ["deepspeed_zero3_cpu", "deepspeed_zero2_cpu", "deepspeed_zero3_offload_cpu", "deepspeed_zero3_offload"]
)
def test_deepspeed_configs_parse(name):
    args, env = accelerate_args(["--config_file", str(ROOT / f"configs/accelerate/{name}.yaml"), "scripts/ppo.py"])
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == ("2" if "zero2" in name else "3")
    if "offload" in name:
        assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "cpu"
        assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == "cpu"


def test_launch_script_passes_the_node_rank_and_address(tmp_path):
    """scripts/train_ppo_crawler.sh turns MACHINE_RANK / MAIN_PROCESS_IP into accelerate's rank arguments."""
    fake = tmp_path / "bin" / "accelerate"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "ACCELERATE_CONFIG": "configs/accelerate/deepspeed_zero3_2nodes.yaml",
        "MACHINE_RANK": "1",
        "MAIN_PROCESS_IP": "10.0.0.1",
        "PASA_LAUNCH_CHECK": "0",  # no GPUs or checkpoints here: only the arguments handed to accelerate matter
    }
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/train_ppo_crawler.sh"), "--output_dir", "x"], env=env, capture_output=True,
        text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert out[:8] == [
        "launch", "--config_file", "configs/accelerate/deepspeed_zero3_2nodes.yaml", "--main_process_port", "2501",
        "--machine_rank", "1", "--main_process_ip",
    ]  # fmt: skip
    assert out[8] == "10.0.0.1" and out[9:13] == [
        "scripts/ppo.py",
        "--config",
        "configs/recipes/ppo_crawler.yaml",
        "--output_dir",
    ]
