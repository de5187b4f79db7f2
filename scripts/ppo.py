"""Session-level PPO of the Crawler (paper §3.2, DESIGN §1.3) on AutoScholarQuery, offline by default.

Reads the AutoScholarQuery train jsonl (``question``, ``answer`` titles, ``source_meta.published_time``), the SFT
crawler (policy, frozen reference, value backbone with a fresh head), a paper source (the released paper DB with the
offline search index; Serper with ``--online``) and a Selector (local checkpoint or OpenAI-compatible URL). Saves
the policy only, in Hugging Face format, loadable by ``pasa.llm.hf.HFLLM``. Nothing is downloaded.

Arguments: trl's ``TrlParser`` (``--config recipe.yaml``, the command line wins); the released flag names are
renamed to the ones here by ``RELEASED_FLAGS`` below; a bf16 recipe on a machine without CUDA runs on CPU in float32.

Launch lines::

    # the released launch: 2 nodes x 8 GPUs, DeepSpeed ZeRO-3 (see scripts/train_ppo_crawler.sh)
    accelerate launch --config_file configs/accelerate/deepspeed_zero3_2nodes.yaml --machine_rank 0 \\
        --main_process_ip <node-0> --main_process_port 2501 scripts/ppo.py --config configs/recipes/ppo_crawler.yaml

    # one node, 8 GPUs, selector served by vLLM
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/ppo.py \\
        --config configs/recipes/ppo_crawler.yaml --selector_path http://localhost:8000/v1#pasa-7b-selector

    # single process, tiny smoke run
    python scripts/ppo.py --config configs/recipes/ppo_crawler.yaml --model_name_or_path checkpoints/tiny \\
        --selector_path checkpoints/tiny --bf16 false --attn_implementation sdpa --total_episodes 8 --use_cpu true

    # CPU, two processes: DeepSpeed ZeRO-3 (as tested), or plain DDP
    DS_ACCELERATOR=cpu accelerate launch --config_file configs/accelerate/deepspeed_zero3_cpu.yaml scripts/ppo.py \\
        --config configs/recipes/ppo_crawler.yaml --use_cpu true --bf16 false --dtype float32 ...
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml scripts/ppo.py ... --use_cpu true

    # will it fit? (policy + value + reference + optimizer per GPU, DeepSpeed's estimators)
    python scripts/plan_memory.py --num_gpus 8 --gpu_memory_gb 80
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

logger = logging.getLogger(__name__)


@dataclass
class PPOScriptArguments:
    """Data arguments of ``scripts/ppo.py``."""

    dataset_name: str = field(
        default="data/AutoScholarQuery/train.jsonl",
        metadata={"help": "AutoScholarQuery-shaped jsonl: question, answer (titles), optional source_meta."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N queries."})
    end_date_offset_days: int = field(
        default=7, metadata={"help": "end date = source paper's published_time minus this (DESIGN §1.1)."}
    )


# The released flag names (hyc2026/trl PPOConfig and the bytedance/pasa PPO launch) and the flag here with the same
# meaning; argv is renamed with this map before parsing (docs/ppo.md "Flags").
RELEASED_FLAGS = {
    "--sft_model_path": "--model_name_or_path",
    "--reward_model_path": "--value_model_path",  # the fork loaded the value model (fresh scalar head) from it
    "--paper_id": "--id2paper",
    "--use_vm": "--use_value_bootstrap",
    "--search_select_score": "--alpha_search",
    "--expand_select_score": "--alpha_expand",
    "--search_cost": "--c_search",
    "--expand_cost": "--c_expand",
    "--max_papers": "--value_papers_max",
    "--warm_up_step": "--value_warmup_updates",
}


def make_parser():
    """``TrlParser`` of (PPOScriptArguments, SessionPPOConfig); ``--config recipe.yaml``, the command line wins."""
    from trl import TrlParser

    from trl_ext.config import SessionPPOConfig

    return TrlParser((PPOScriptArguments, SessionPPOConfig), prog="scripts/ppo.py")


def parse_args(argv: list[str] | None = None):
    """``(PPOScriptArguments, SessionPPOConfig)`` from argv: released names renamed (``RELEASED_FLAGS``), and a bf16
    recipe run on CPU in float32 when there is no CUDA GPU."""
    import torch

    from trl_ext.parser import cpu_fallback_args, parse_known_or_exit, rename_flags

    argv = rename_flags(sys.argv[1:] if argv is None else argv, RELEASED_FLAGS)
    argv = cpu_fallback_args(argv, torch.cuda.is_available())
    return parse_known_or_exit(make_parser(), argv)


def load_queries(path: str, offset_days: int = 7, limit: int | None = None) -> list[dict]:
    """Training episodes ``{"question", "answer", "end_date"}`` read by ``pasa.queries.load_queries`` (the one query
    reader and end-date rule); bad records are logged with their line and skipped."""
    from pasa.queries import load_queries as read_queries

    if not os.path.isfile(path):
        raise SystemExit(f"--dataset_name {path!r} does not exist")
    items = read_queries(path, limit, require_answer=True, offset_days=offset_days)
    if not items:
        raise SystemExit(f"no usable training query in {path!r}")
    return [{"question": i.question.strip(), "answer": i.answer, "end_date": i.end_date} for i in items]


def build_source(cfg):
    """The paper source: offline local search over the paper DB by default (``pasa.tools.sources``)."""
    from pasa.tools.sources import build_paper_source

    try:
        return build_paper_source(
            paper_db=cfg.paper_db,
            id2paper=cfg.id2paper,
            index=cfg.search_index,
            online=cfg.online,
            released_behaviour=cfg.released_behaviour,  # the paper source's released variants too
        )
    except ValueError as err:  # no usable source, or --online without SERPER_API_KEY
        raise SystemExit(str(err)) from err


def build_selector(cfg, device: str):
    """A ``pasa.selector.Selector`` on a local checkpoint or an OpenAI-compatible server; None when unused."""
    if not cfg.use_selector:
        return None
    if not cfg.selector_path:
        raise SystemExit(
            "--use_selector true needs --selector_path (a checkpoint directory or http://host:port/v1#model)"
        )
    from pasa.llm import load_llm
    from pasa.selector import Selector

    spec = cfg.selector_path
    if not spec.startswith(("http://", "https://")) and not os.path.isdir(spec):
        raise SystemExit(f"--selector_path {spec!r} is neither a local directory nor an http(s) URL")
    from trl_ext.modeling import zero3_init_disabled

    with zero3_init_disabled():  # a full local copy per process, outside ZeRO-3 partitioning
        llm = load_llm(spec, batch_size=cfg.selector_batch_size, device=cfg.selector_device or device)
    return Selector(llm, threshold=cfg.select_threshold)


def build_models(cfg):
    """Tokenizer, policy, frozen reference and value model (fresh scalar head ~ N(0, value_head_init_std))."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from pasa.llm.attn import resolve_attn_implementation
    from trl_ext.modeling import init_value_head

    for name, path in (("model_name_or_path", cfg.model_name_or_path), ("value_model_path", cfg.value_model_path)):
        if not path or not os.path.isdir(path):
            raise SystemExit(
                f"--{name} must be a local checkpoint directory (got {path!r}); this script never downloads"
            )
    kwargs = {"dtype": cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = resolve_attn_implementation(cfg.attn_implementation)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_name_or_path, padding_side="left")
    if tokenizer.pad_token is None:
        raise SystemExit(f"the tokenizer of {cfg.model_name_or_path!r} has no pad token")
    policy = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, **kwargs)
    ref_policy = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, **kwargs)
    value_model = load_value_model(AutoModelForSequenceClassification, cfg.value_model_path, **kwargs)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    init_value_head(value_model, cfg.value_head_init_std, cfg.seed)  # on the gathered head under ZeRO-3
    return tokenizer, policy, ref_policy, value_model


def load_value_model(model_class, path: str, **kwargs):
    """The value model: the SFT crawler with a new scalar head (``num_labels=1``). The head is missing from the
    checkpoint by design (it is initialised next), so transformers' load report, which lists it as MISSING, is kept
    quiet; any other missing, unexpected or mismatched weight is one WARNING."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(path, num_labels=1, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    head = {"score.weight", "score.bias"}
    other = [k for k in info.get("missing_keys", []) if k not in head]
    other += list(info.get("unexpected_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if other:
        logger.warning("value model %s: weights not loaded as expected: %s", path, other)
    return model


def warmup_banner(warmup: int, num_updates: int) -> list[str]:
    """Start-up lines announcing the value-only warm-up (released warm_up_step, DESIGN §1.3).

    >>> warmup_banner(50, 250)
    ['value warm-up: policy frozen for updates 1-50 (value loss only), policy trained from update 51']
    >>> warmup_banner(0, 2)
    ['value warm-up: none (policy trained from update 1)']
    """
    if warmup <= 0:
        return ["value warm-up: none (policy trained from update 1)"]
    lines = [
        f"value warm-up: policy frozen for updates 1-{warmup} (value loss only), policy trained from update "
        f"{warmup + 1}"
    ]
    if num_updates <= warmup:
        lines.append(
            f"warning: this run has {num_updates} update(s), all inside the value warm-up: the saved policy will be "
            "the SFT policy (lower --value_warmup_updates to train it)"
        )
    return lines


def run(script_args: PPOScriptArguments, cfg, trainer_cls=None):
    """Build the environment, models and trainer (``trainer_cls``, default ``SessionPPOTrainer``) from parsed
    arguments, train, and return the trainer."""
    from accelerate import PartialState

    from trl_ext.env import PaperSearchEnv
    from trl_ext.trainer import SessionPPOTrainer

    trainer_cls = trainer_cls or SessionPPOTrainer
    queries = load_queries(script_args.dataset_name, script_args.end_date_offset_days, script_args.max_train_samples)
    state = PartialState()
    device = "cpu" if cfg.use_cpu else str(state.device)
    with state.main_process_first():  # the first process builds a missing search index; the others load it
        source = build_source(cfg)
    env = PaperSearchEnv(source, build_selector(cfg, device), cfg)
    tokenizer, policy, ref_policy, value_model = build_models(cfg)
    trainer = trainer_cls(cfg, tokenizer, policy, ref_policy, value_model, queries, env)
    say = trainer.accelerator.print
    say(
        f"{len(queries)} queries, {trainer.world_size} process(es), {trainer.num_updates} updates of "
        f"{trainer.episodes_per_update} queries x {cfg.rounds} rounds"
    )
    for line in warmup_banner(cfg.value_warmup_updates, trainer.num_updates):
        say(line)
    trainer.train()
    say(f"policy saved to {cfg.output_dir}")
    if trainer.num_updates <= cfg.value_warmup_updates:
        decay = f" (up to weight decay {cfg.weight_decay:g})" if cfg.weight_decay else ""
        say(f"the saved policy is the SFT policy{decay}: every update of this run was a value warm-up update")
    return trainer


def check_models(cfg) -> None:
    """One line and exit 2 before the paper source, the index or any model loads: each checkpoint folder exists
    (never a Hub download), a served selector answers (exit 1)."""
    from pasa.checks import CheckError, check_model_path, check_model_server, exit_with, is_http_url

    try:
        check_model_path(cfg.model_name_or_path, "--model_name_or_path", allow_hub_id=False)
        check_model_path(cfg.value_model_path or cfg.model_name_or_path, "--value_model_path", allow_hub_id=False)
        if cfg.use_selector and cfg.selector_path:
            if is_http_url(cfg.selector_path):
                check_model_server(cfg.selector_path, "--selector_path")
            else:
                check_model_path(cfg.selector_path, "--selector_path", allow_hub_id=False)
    except CheckError as err:
        exit_with(err, "scripts/ppo.py")


def main(argv: list[str] | None = None, trainer_cls=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pasa.flags import end_launched_process, quiet_other_ranks

    quiet_other_ranks()  # each warning once in a multi-process launch
    script_args, cfg = parse_args(argv)
    check_models(cfg)
    run(script_args, cfg, trainer_cls)
    return end_launched_process(0)


if __name__ == "__main__":
    sys.exit(main())
