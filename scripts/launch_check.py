"""Checks a training launch before ``accelerate launch`` starts its ranks: one line, once, exit status 2.

The launch scripts (``scripts/train_*.sh``) call it with the recipe name, the accelerate config, the recipe and the
arguments they pass on. It stops a launch that cannot work here:

- a GPU config (``use_cpu`` false in the accelerate config, and neither the recipe nor the arguments set
  ``use_cpu true``) on a machine with fewer CUDA GPUs than ranks per node. GPUs are counted with ``nvidia-smi -L``
  (limited by ``CUDA_VISIBLE_DEVICES``), or with torch when ``nvidia-smi`` is not on ``PATH``;
- a model path (``model_name_or_path``, PPO's ``value_model_path`` and local ``selector_path``) that is not a
  checkpoint folder.

``PASA_LAUNCH_CHECK=0`` skips it (a launching shell that cannot see the nodes' GPUs).

Launch line (what the scripts run)::

    python scripts/launch_check.py sft_selector configs/accelerate/deepspeed_zero3.yaml \\
        configs/recipes/sft_selector.yaml --output_dir results/x
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CPU_ACCELERATE_CONFIG = "configs/accelerate/cpu_2proc.yaml"
# (key in the recipe or on the command line, released spelling, a server URL allowed)
MODEL_KEYS = {
    "sft": [("model_name_or_path", "sft_model_path", False)],
    "ppo": [
        ("model_name_or_path", "sft_model_path", False),
        ("value_model_path", "reward_model_path", False),
        ("selector_path", None, True),
    ],
}
TRUE = ("true", "1", "yes")


def read_yaml(path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def cli_values(argv: list[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs of the arguments passed on (a bare flag: "true"; last one wins)."""
    values: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "true"
        values[key] = value
    return values


def count_gpus() -> tuple[int, str]:
    """(CUDA GPUs visible to the launch, how they were counted)."""
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        count, how = sum(line.startswith("GPU ") for line in listing.splitlines()), "nvidia-smi -L"
    else:
        try:
            import torch

            count, how = torch.cuda.device_count(), "torch.cuda.device_count()"
        except Exception:  # noqa: BLE001 - no usable torch: no GPU to launch on
            count, how = 0, "no nvidia-smi, no CUDA torch"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        count = min(count, len(ids))
        how += ", CUDA_VISIBLE_DEVICES"
    return count, how


def check_gpus(name: str, accelerate: dict, recipe: dict, cli: dict[str, str], accelerate_config: str) -> str | None:
    """The one-line reason a GPU launch cannot start here, or None."""
    on_cpu = str(cli.get("use_cpu", recipe.get("use_cpu", False))).lower() in TRUE
    if accelerate.get("use_cpu") is True or on_cpu:
        return None
    processes = int(os.environ.get("NUM_PROCESSES") or accelerate.get("num_processes") or 1)
    per_node = max(1, processes // int(accelerate.get("num_machines") or 1))
    found, how = count_gpus()
    if found >= per_node:
        return None
    return (
        f"this recipe needs {per_node} CUDA GPUs ({accelerate_config}), found {found} ({how}); for CPU use "
        f"RECIPE=configs/recipes/{name}_smoke.yaml (on `pasa tiny` artifacts) or "
        f"ACCELERATE_CONFIG={CPU_ACCELERATE_CONFIG} with --use_cpu true"
    )


def check_models(kind: str, recipe: dict, cli: dict[str, str], recipe_path: str) -> str | None:
    """The one-line reason a model path of the run is unusable, or None."""
    from pasa.checks import CheckError, check_model_path

    for key, released, allow_url in MODEL_KEYS[kind]:
        if (
            key == "selector_path"
            and str(cli.get("use_selector", recipe.get("use_selector", True))).lower() not in TRUE
        ):
            continue
        if key in cli or (released and released in cli):
            spec, where = cli.get(key, cli.get(released or "")), f"--{key}"
        elif recipe.get(key):
            spec, where = str(recipe[key]), f"{key} in {recipe_path}"
        else:
            continue
        try:
            check_model_path(spec, where, allow_url=allow_url, allow_hub_id=False)
        except CheckError as err:
            return str(err)
    return None


def main(argv: list[str]) -> int:
    name, accelerate_config, recipe_path, *passed = argv
    cli = cli_values(passed)
    accelerate, recipe = read_yaml(accelerate_config), read_yaml(cli.get("config", recipe_path))
    kind = "ppo" if name.startswith("ppo") else "sft"
    problem = check_gpus(name, accelerate, recipe, cli, accelerate_config) or check_models(
        kind, recipe, cli, recipe_path
    )
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
