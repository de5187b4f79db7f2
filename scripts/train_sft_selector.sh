#!/usr/bin/env bash
# Selector SFT with the released recipe: Qwen2.5-7B-Instruct, 8 GPUs, DeepSpeed ZeRO-3 (DESIGN §1.3, docs/sft.md).
#   bash scripts/train_sft_selector.sh                                  # configs/recipes/sft_selector.yaml as is
#   bash scripts/train_sft_selector.sh --output_dir results/x --model_name_or_path /path/to/Qwen2.5-7B-Instruct
# Extra arguments go to scripts/sft.py and override the recipe. Environment: ACCELERATE_CONFIG (default
# configs/accelerate/deepspeed_zero3.yaml), NUM_PROCESSES (default: the config's 8), MAIN_PROCESS_PORT (2501).
set -euo pipefail
cd "$(dirname "$0")/.."
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/deepspeed_zero3.yaml}
launch_args=(--config_file "$ACCELERATE_CONFIG" --main_process_port "${MAIN_PROCESS_PORT:-2501}")
if [[ -n "${NUM_PROCESSES:-}" ]]; then launch_args+=(--num_processes "$NUM_PROCESSES"); fi
exec accelerate launch "${launch_args[@]}" scripts/sft.py --config configs/recipes/sft_selector.yaml "$@"
