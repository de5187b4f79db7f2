#!/usr/bin/env bash
# Selector SFT with the released recipe: Qwen2.5-7B-Instruct, 8 GPUs, DeepSpeed ZeRO-3 (DESIGN §1.3, docs/sft.md).
#   bash scripts/train_sft_selector.sh                                  # configs/recipes/sft_selector.yaml as is
#   bash scripts/train_sft_selector.sh --output_dir results/x --model_name_or_path /path/to/Qwen2.5-7B-Instruct
# Checked first (scripts/launch_check.py; PASA_LAUNCH_CHECK=0 skips): GPUs for the config, model paths.
# Extra arguments go to scripts/sft.py and override the recipe. Environment: ACCELERATE_CONFIG (default
# configs/accelerate/deepspeed_zero3.yaml), NUM_PROCESSES (default: the config's), MAIN_PROCESS_PORT (2501), and for
# several nodes MACHINE_RANK and MAIN_PROCESS_IP, e.g. on each of 2 nodes:
#   ACCELERATE_CONFIG=configs/accelerate/deepspeed_zero3_2nodes.yaml MACHINE_RANK=0 MAIN_PROCESS_IP=<node-0-host> \
#       bash scripts/train_sft_selector.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/deepspeed_zero3.yaml}
RECIPE=${RECIPE:-configs/recipes/sft_selector.yaml}  # another recipe, e.g. the *_smoke.yaml CPU runs on `pasa tiny` artifacts
# DeepSpeed on a CPU config (configs/accelerate/deepspeed_zero3_cpu.yaml): its CPU accelerator, even where GPUs exist
if grep -q "^use_cpu: true" "$ACCELERATE_CONFIG"; then export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}; fi
launch_args=(--config_file "$ACCELERATE_CONFIG" --main_process_port "${MAIN_PROCESS_PORT:-2501}")
if [[ -n "${NUM_PROCESSES:-}" ]]; then launch_args+=(--num_processes "$NUM_PROCESSES"); fi
if [[ -n "${MACHINE_RANK:-}" ]]; then launch_args+=(--machine_rank "$MACHINE_RANK"); fi
if [[ -n "${MAIN_PROCESS_IP:-}" ]]; then launch_args+=(--main_process_ip "$MAIN_PROCESS_IP"); fi
# one line, once, before any rank starts: too few GPUs for this config, or a model path that is not a checkpoint
if [[ "${PASA_LAUNCH_CHECK:-1}" != 0 ]]; then python scripts/launch_check.py sft_selector "$ACCELERATE_CONFIG" "$RECIPE" "$@"; fi
exec accelerate launch "${launch_args[@]}" scripts/sft.py --config "$RECIPE" "$@"
