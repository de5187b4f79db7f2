"""Supervised fine-tuning of the Selector or the Crawler with stock trl (DESIGN §1.3), loss on the assistant part.

Reads local jsonl only: the released ``sft_selector/*.jsonl`` / ``sft_crawler/train.jsonl`` chat records
(``messages``), or ``prompt``/``completion`` records (``trl_ext/sft_data.py``); records of another shape are an
error naming the file and line. The model and tokenizer load from a local directory, never from the Hub.

Arguments: trl's ``TrlParser`` (``--config recipe.yaml``, the command line wins); the released flag names are
renamed to the ones here by ``RELEASED_FLAGS`` below; a bf16 recipe on a machine without CUDA runs on CPU in float32.

Launch lines::

    # the released recipes: 8 GPUs, DeepSpeed ZeRO-3, Qwen2.5-7B-Instruct
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/sft.py \\
        --config configs/recipes/sft_selector.yaml
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/sft.py \\
        --config configs/recipes/sft_crawler.yaml --output_dir results/sft_crawler_run2

    # single process (any recipe key can be overridden on the command line)
    python scripts/sft.py --config configs/recipes/sft_crawler.yaml --model_name_or_path checkpoints/tiny \\
        --bf16 false --attn_implementation sdpa --max_steps 20

    # CPU, two processes: DeepSpeed ZeRO-3 (as tested), or plain DDP
    DS_ACCELERATOR=cpu accelerate launch --config_file configs/accelerate/deepspeed_zero3_cpu.yaml scripts/sft.py \\
        --config configs/recipes/sft_crawler.yaml --use_cpu true --bf16 false --dtype float32 ...
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml scripts/sft.py --config ... --use_cpu true
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trl_ext.sft_data import PROMPT_FORMATS, SFTRecordError, load_sft_examples  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class SFTScriptArguments:
    """Data arguments of ``scripts/sft.py``."""

    dataset_name: list[str] = field(
        default_factory=list,
        metadata={"help": "Training jsonl file(s), e.g. data/sft_selector/train.jsonl (the released flag name)."},
    )
    eval_files: list[str] = field(
        default_factory=list, metadata={"help": "Evaluation jsonl file(s); used when --eval_strategy is not 'no'."}
    )
    prompt_format: str = field(
        default="chat",
        metadata={
            "help": "'chat': render prompts with the tokenizer's chat template (the released training, both agents). "
            "'raw': the user content as plain text, no template (how the released inference feeds the Selector).",
            "choices": list(PROMPT_FORMATS),
        },
    )
    skip_bad_records: bool = field(
        default=False, metadata={"help": "Log and skip records of the wrong shape instead of stopping with an error."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training examples (smoke runs)."}
    )


# The released flag names (trl 0.12 SFTConfig, transformers 4.4x TrainingArguments, as the released SFT launch used
# them) and the flag here with the same meaning; argv is renamed with this map before parsing (docs/sft.md).
RELEASED_FLAGS = {
    "--max_seq_length": "--max_length",
    "--warmup_ratio": "--warmup_steps",  # a value below 1 is a ratio of the total steps, rounded up as before
    "--torch_dtype": "--dtype",
}


def make_parser():
    """``TrlParser`` of (SFTScriptArguments, SFTConfig, ModelConfig); ``--config recipe.yaml``, the command line
    wins."""
    from trl import ModelConfig, TrlParser

    from trl_ext.sft_config import CheckpointedSFTConfig  # trl's SFTConfig without the checkpointing-name warning

    return TrlParser((SFTScriptArguments, CheckpointedSFTConfig, ModelConfig), prog="scripts/sft.py")


def parse_args(argv: list[str] | None = None):
    """``(SFTScriptArguments, SFTConfig, ModelConfig)`` from argv: released names renamed (``RELEASED_FLAGS``), and
    a bf16 recipe run on CPU in float32 when there is no CUDA GPU."""
    import torch

    from trl_ext.parser import cpu_fallback_args, parse_known_or_exit, rename_flags

    argv = rename_flags(sys.argv[1:] if argv is None else argv, RELEASED_FLAGS)
    argv = cpu_fallback_args(argv, torch.cuda.is_available(), bf16_default=True)  # SFTConfig: bf16 unless fp16
    return parse_known_or_exit(make_parser(), argv)


def build_trainer(script_args: SFTScriptArguments, training_args, model_args):
    """The ``SFTTrainer`` for parsed arguments (no training yet); errors on non-local models or bad records."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer, get_peft_config

    path = model_args.model_name_or_path
    if not path or not os.path.isdir(path):
        raise SystemExit(
            f"--model_name_or_path must be a local checkpoint directory (got {path!r}); this script never downloads."
        )
    if not script_args.dataset_name:
        raise SystemExit("no --dataset_name given (the training jsonl files)")
    train = load_sft_examples(
        script_args.dataset_name,
        script_args.prompt_format,
        script_args.skip_bad_records,
        script_args.max_train_samples,
    )
    evaluation = None
    if training_args.eval_strategy != "no":
        if not script_args.eval_files:
            raise SystemExit(f"--eval_strategy {training_args.eval_strategy} needs --eval_files")
        evaluation = Dataset.from_list(
            load_sft_examples(script_args.eval_files, script_args.prompt_format, script_args.skip_bad_records)
        )

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if script_args.prompt_format == "chat" and not tokenizer.chat_template:
        raise SystemExit(f"the tokenizer in {path!r} has no chat template; use --prompt_format raw")

    # Released: the collator masked everything before the assistant turn. Here the prompt/completion examples
    # carry a completion mask; trl's default (None) already means True for them, this makes it explicit.
    if training_args.completion_only_loss is None:
        training_args.completion_only_loss = True
    elif not training_args.completion_only_loss:
        logger.warning("completion_only_loss=False: prompt tokens get loss too, unlike the released recipe")

    from pasa.llm.attn import resolve_attn_implementation  # flash-attn missing -> sdpa, one warning

    model_init_kwargs = {
        "dtype": model_args.dtype,
        "attn_implementation": resolve_attn_implementation(model_args.attn_implementation),
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "local_files_only": True,
    }
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}

    return SFTTrainer(
        model=path,
        args=training_args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )


def main(argv: list[str] | None = None) -> int:
    from pasa.flags import end_launched_process, quiet_other_ranks

    quiet_other_ranks()  # each warning once in a multi-process launch
    script_args, training_args, model_args = parse_args(argv)
    from pasa.checks import CheckError, check_model_path, exit_with

    try:  # one line before anything loads: a local path never becomes a Hub download
        check_model_path(model_args.model_name_or_path, "--model_name_or_path", allow_hub_id=False)
    except CheckError as err:
        exit_with(err, "scripts/sft.py")
    try:
        trainer = build_trainer(script_args, training_args, model_args)
    except SFTRecordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trainer.accelerator.print(
        f"SFT of {model_args.model_name_or_path} on {len(trainer.train_dataset)} examples "
        f"({script_args.prompt_format} prompts, {trainer.accelerator.num_processes} process(es)), "
        f"output {training_args.output_dir}"
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"saved to {training_args.output_dir}")
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()
    return end_launched_process(0)


if __name__ == "__main__":
    sys.exit(main())
