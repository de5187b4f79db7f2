"""The launch scripts check GPUs and model paths once, before accelerate starts any rank.

The GPU count is faked with a stub ``nvidia-smi`` on ``PATH`` (the check counts the ``GPU n:`` lines of
``nvidia-smi -L``), and ``accelerate`` is a stub that records that it was called.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, args: list[str], tmp_path: Path, gpus: int, **env_extra: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/usr/bin/env bash\n" + "".join(f'echo "GPU {i}: NVIDIA H100 (UUID: GPU-{i})"\n' for i in range(gpus))
    )
    launched = tmp_path / "launched"
    accelerate = bin_dir / "accelerate"
    accelerate.write_text(f'#!/usr/bin/env bash\necho "$@" >> {launched}\n')
    for stub in (smi, accelerate):
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NUM_PROCESSES", "CUDA_VISIBLE_DEVICES", "RECIPE")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env_extra)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env=env, capture_output=True, text=True)
    return proc, launched.read_text().splitlines() if launched.exists() else []


@pytest.mark.parametrize("name", ["sft_selector", "sft_crawler", "ppo_crawler"])
def test_no_gpu_is_one_line_before_any_rank(name, tmp_path):
    proc, launched = _run(f"train_{name}.sh", [], tmp_path, gpus=0)
    assert proc.returncode == 2 and launched == []
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    line = proc.stderr.strip()
    assert "needs 8 CUDA GPUs" in line and "found 0 (nvidia-smi -L)" in line
    assert f"RECIPE=configs/recipes/{name}_smoke.yaml" in line and "configs/accelerate/cpu_2proc.yaml" in line
    assert (ROOT / f"configs/recipes/{name}_smoke.yaml").exists()


def test_the_gpu_count_follows_num_processes_nodes_and_visible_devices(tmp_path):
    proc, _ = _run("train_sft_crawler.sh", ["--output_dir", "x"], tmp_path, gpus=2, NUM_PROCESSES="4")
    assert proc.returncode == 2 and "needs 4 CUDA GPUs" in proc.stderr and "found 2" in proc.stderr
    two_nodes = {"ACCELERATE_CONFIG": "configs/accelerate/deepspeed_zero3_2nodes.yaml"}
    proc, _ = _run("train_sft_crawler.sh", [], tmp_path, gpus=4, **two_nodes)
    assert "needs 8 CUDA GPUs" in proc.stderr and "found 4" in proc.stderr  # 16 ranks over 2 nodes
    proc, _ = _run("train_sft_crawler.sh", [], tmp_path, gpus=8, CUDA_VISIBLE_DEVICES="0,1")
    assert "found 2" in proc.stderr


def test_a_missing_model_is_one_line_with_what_to_do(tmp_path):
    proc, launched = _run("train_sft_selector.sh", [], tmp_path, gpus=8)
    if (ROOT / "checkpoints/Qwen2.5-7B-Instruct/config.json").exists():
        pytest.skip("a real base model is in checkpoints/")
    assert proc.returncode == 2 and launched == [] and len(proc.stderr.splitlines()) == 1
    assert "checkpoints/Qwen2.5-7B-Instruct (model_name_or_path in configs/recipes/sft_selector.yaml)" in proc.stderr
    assert "pasa download" in proc.stderr

    proc, launched = _run("train_ppo_crawler.sh", ["--model_name_or_path", str(tmp_path / "nope")], tmp_path, gpus=8)
    assert proc.returncode == 2 and launched == [] and len(proc.stderr.splitlines()) == 1
    assert "--model_name_or_path" in proc.stderr and "pass a checkpoint folder" in proc.stderr


def test_a_ppo_launch_before_sft_says_to_train_first(tmp_path):
    if (ROOT / "results/sft_crawler/config.json").exists():
        pytest.skip("an SFT crawler is in results/")
    proc, _ = _run("train_ppo_crawler.sh", [], tmp_path, gpus=8)
    assert proc.returncode == 2 and "results/sft_crawler" in proc.stderr and "train it first" in proc.stderr
    assert "run `pasa download`" not in proc.stderr


def test_good_launches_start_accelerate_once(tiny_checkpoint, tmp_path):
    model = ["--model_name_or_path", tiny_checkpoint]
    proc, launched = _run("train_sft_selector.sh", model, tmp_path, gpus=8)
    assert proc.returncode == 0, proc.stderr
    assert len(launched) == 1 and "scripts/sft.py --config configs/recipes/sft_selector.yaml" in launched[0]
    cpu = {"ACCELERATE_CONFIG": "configs/accelerate/cpu_2proc.yaml"}
    proc, launched = _run("train_sft_crawler.sh", [*model, "--use_cpu", "true"], tmp_path / "cpu", gpus=0, **cpu)
    assert proc.returncode == 0 and len(launched) == 1, proc.stderr
    smoke = {"RECIPE": "configs/recipes/sft_crawler_smoke.yaml"}
    proc, launched = _run("train_sft_crawler.sh", model, tmp_path / "smoke", gpus=0, **smoke)
    assert proc.returncode == 0 and len(launched) == 1, proc.stderr  # the recipe sets use_cpu: true


def test_the_check_can_be_skipped(tmp_path):
    proc, launched = _run("train_sft_selector.sh", [], tmp_path, gpus=0, PASA_LAUNCH_CHECK="0")
    assert proc.returncode == 0 and len(launched) == 1
