"""scripts/sft.py and trl_ext/sft_data.py: record checks, assistant-only loss, a tiny model that learns its training
set and then runs in the agent loop, the released recipes, and a two-process CPU launch."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pasa.prompts import render_search_prompt, render_select_prompt
from tests.fakes import load_script
from trl_ext.sft_data import (
    RESPONSE_TEMPLATE,
    SFTRecordError,
    check_record,
    load_sft_examples,
    read_selector_example,
    to_prompt_completion,
)

ROOT = Path(__file__).resolve().parents[2]
SFT_FIXTURES = ROOT / "tests" / "fixtures" / "sft"
TRAIN_CHAT = str(SFT_FIXTURES / "train_chat.jsonl")
# Training arguments for fast CPU runs (the recipes' bf16/flash-attention need a GPU).
CPU_ARGS = ["--bf16", "false", "--report_to", "none", "--save_strategy", "no", "--dtype", "float32"]


sft = load_script("sft")
ppo = load_script("ppo")


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory) -> str:
    """A tiny Qwen2 wide enough (hidden 64) to memorise the fixture set in a few dozen steps."""
    from pasa.demo import build_tiny_checkpoint

    return build_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny64")), hidden_size=64)


def make_trainer(model: str, output_dir, *extra: str):
    script_args, training_args, model_args = sft.parse_args(
        ["--model_name_or_path", model, "--output_dir", str(output_dir), *CPU_ARGS, *extra]
    )
    return sft.build_trainer(script_args, training_args, model_args)


# -- records ------------------------------------------------------------------------------------------------------
def test_chat_and_prompt_completion_records_become_prompt_completion_examples():
    chat = load_sft_examples([TRAIN_CHAT])
    assert len(chat) == 7
    assert all(e["prompt"][-1]["role"] == "user" and e["completion"][0]["role"] == "assistant" for e in chat)
    both = load_sft_examples([TRAIN_CHAT, str(SFT_FIXTURES / "prompt_completion.jsonl")])
    assert len(both) == 9 and both[-1]["prompt"] == [{"role": "user", "content": both[-1]["prompt"][0]["content"]}]
    raw = load_sft_examples([TRAIN_CHAT], prompt_format="raw")
    assert raw[0]["prompt"].endswith("Decision:") and raw[0]["completion"].startswith("True\nReason:")


def test_system_turn_kept_in_chat_and_dropped_in_raw():
    record = {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": "A"},
        ]
    }
    assert to_prompt_completion(record)["prompt"][0] == {"role": "system", "content": "S"}
    assert to_prompt_completion(record, "raw") == {"prompt": "U", "completion": "A"}


def test_bad_shapes_are_an_error_naming_file_and_line(caplog):
    path = str(SFT_FIXTURES / "bad_shape.jsonl")
    with pytest.raises(SFTRecordError) as err:
        load_sft_examples([path])
    message = str(err.value)
    assert "3 record(s)" in message
    for line in (2, 4, 5):
        assert f"bad_shape.jsonl:{line}:" in message
    assert "bad_shape.jsonl:1:" not in message
    assert "malformed JSON" in caplog.text and "bad_shape.jsonl:3" in caplog.text  # pasa.io.iter_jsonl's report
    assert len(load_sft_examples([path], skip_bad=True)) == 1


def test_sft_main_reports_bad_records_and_exits(tiny_checkpoint, tmp_path, capsys):
    path = str(SFT_FIXTURES / "bad_shape.jsonl")
    argv = ["--model_name_or_path", tiny_checkpoint, "--output_dir", str(tmp_path), "--dataset_name", path, *CPU_ARGS]
    assert sft.main(argv) == 2
    assert "bad_shape.jsonl:2: the last message must be the assistant's" in capsys.readouterr().err


@pytest.mark.parametrize(
    "record",
    [
        {"messages": []},
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
        {"prompt": "q"},
        {"prompt": "q", "completion": ["a"]},
        ["not", "an", "object"],
    ],
)
def test_check_record_rejects(record):
    assert check_record(record) is not None


def test_no_examples_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SFTRecordError, match="no training examples"):
        load_sft_examples([str(empty)])


def test_read_selector_example_shapes():
    chat = {
        "messages": [
            {"role": "user", "content": render_select_prompt("q", "T", "A")},
            {"role": "assistant", "content": "False\nReason: no."},
        ]
    }
    assert read_selector_example(chat) == (render_select_prompt("q", "T", "A"), False)
    fields = {"query": "q", "title": "T", "abstract": "A", "label": True}
    assert read_selector_example(fields) == (render_select_prompt("q", "T", "A"), True)
    assert read_selector_example({"query": "q", "title": "T", "label": "yes"}) is None


# -- the loss mask --------------------------------------------------------------------------------------------------
def released_labels(input_ids: list[int], response_ids: list[int]) -> list[int]:
    """The released DataCollatorForCompletionOnlyLM (hyc2026/trl trainer/utils.py, no instruction template),
    rewritten for this test: -100 up to and including the LAST occurrence of the response template."""
    start = None
    for i in range(len(input_ids) - len(response_ids) + 1):
        if input_ids[i : i + len(response_ids)] == response_ids:
            start = i
    if start is None:
        return [-100] * len(input_ids)
    end = start + len(response_ids)
    return [-100] * end + input_ids[end:]


def test_prompt_tokens_carry_no_loss_as_in_the_released_collator(tiny_checkpoint, tmp_path):
    trainer = make_trainer(tiny_checkpoint, tmp_path / "out", "--dataset_name", TRAIN_CHAT)
    tok = trainer.processing_class
    response_ids = tok(RESPONSE_TEMPLATE, add_special_tokens=False)["input_ids"]
    examples = load_sft_examples([TRAIN_CHAT])
    assert len(trainer.train_dataset) == len(examples)
    for row, example in zip(trainer.train_dataset, examples):
        text = tok.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        # the released pipeline: chat-template the messages, tokenize, mask through "<|im_start|>assistant\n"
        assert row["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
        assert row["labels"] == released_labels(row["input_ids"], response_ids)
        prompt_len = len(tok.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False))
        assert text[:prompt_len].endswith(RESPONSE_TEMPLATE)
        trained = tok.decode([t for t in row["labels"] if t != -100])
        assert trained == example["completion"][0]["content"] + "<|im_end|>\n"


def test_raw_format_masks_the_raw_prompt_and_adds_eos(tiny_checkpoint, tmp_path):
    trainer = make_trainer(tiny_checkpoint, tmp_path / "out", "--dataset_name", TRAIN_CHAT, "--prompt_format", "raw")
    tok = trainer.processing_class
    row, example = trainer.train_dataset[0], load_sft_examples([TRAIN_CHAT], prompt_format="raw")[0]
    n_prompt = len(tok(example["prompt"], add_special_tokens=False)["input_ids"])
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert tok.decode(row["labels"][n_prompt:]) == example["completion"] + tok.eos_token
    assert "<|im_start|>" not in tok.decode(row["input_ids"])


def test_non_local_model_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="local checkpoint directory"):
        make_trainer("Qwen/Qwen2.5-7B-Instruct", tmp_path / "out", "--dataset_name", TRAIN_CHAT)


# -- training ----------------------------------------------------------------------------------------------------
def mean_target_nll(model, dataset) -> float:
    """Mean negative log-likelihood of the unmasked (assistant) tokens of a prepared dataset."""
    import torch

    losses = []
    with torch.no_grad():
        for row in dataset:
            ids = torch.tensor([row["input_ids"]])
            losses.append(model(input_ids=ids, labels=torch.tensor([row["labels"]])).loss.item())
    return sum(losses) / len(losses)


def train_args(*extra: str) -> list[str]:
    """Memorise the fixture set: 150 steps leave the selector decisions separated whatever the thread count (with
    60, one OMP thread left them at chance)."""
    return [
        "--max_steps",
        "150",
        "--learning_rate",
        "1e-2",
        "--lr_scheduler_type",
        "constant",
        "--per_device_train_batch_size",
        "7",
        "--gradient_checkpointing",
        "false",
        "--logging_steps",
        "5",
        "--seed",
        "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_chat(tiny64, tmp_path_factory):
    """The tiny model fine-tuned on the fixture set (chat format), with NLLs before and after and the loss log."""
    out = tmp_path_factory.mktemp("sft-chat")
    trainer = make_trainer(tiny64, out, "--dataset_name", TRAIN_CHAT, *train_args())
    before = mean_target_nll(trainer.model, trainer.train_dataset)
    trainer.train()
    after = mean_target_nll(trainer.model, trainer.train_dataset)
    trainer.save_model(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"path": str(out), "before": before, "after": after, "losses": losses}


def test_loss_falls_and_training_targets_become_likely(trained_chat):
    losses = trained_chat["losses"]
    assert len(losses) >= 10
    assert losses[-1] < 0.5 * losses[0]
    assert trained_chat["after"] < 0.5 * trained_chat["before"]


def test_trained_checkpoint_answers_its_training_prompts(tiny64, trained_chat):
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.prompts import parse_search_queries

    target = ["graph attention", "attention on graphs survey"]
    base = HFLLM(HFLLMConfig(tiny64, max_new_tokens=32, device="cpu"))
    tuned = HFLLM(HFLLMConfig(trained_chat["path"], max_new_tokens=32, device="cpu"))
    prompt = render_search_prompt("graph attention networks")
    assert parse_search_queries(base.generate([prompt])[0]) != target
    assert parse_search_queries(tuned.generate([prompt])[0]) == target

    examples = load_sft_examples([TRAIN_CHAT])[:4]  # selector examples: True, False, True, False
    labels = [True, False, True, False]

    def p_true(llm):  # the Selector's score on the prompts as trained (chat template)
        return llm.true_prob([llm.apply_chat(e["prompt"][0]["content"]) for e in examples])

    def gap(scores):
        pos = [s for s, y in zip(scores, labels) if y]
        neg = [s for s, y in zip(scores, labels) if not y]
        return min(pos) - max(neg)

    tuned_scores = p_true(tuned)
    assert gap(tuned_scores) > 0.1 and gap(tuned_scores) > gap(p_true(base))


def test_trained_checkpoint_runs_in_the_agent_loop(trained_chat):
    from pasa.agent import AgentConfig, PaperAgent
    from pasa.crawler import Crawler
    from pasa.demo import demo_papers
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.selector import Selector
    from pasa.tools.sources import InMemoryPaperSource

    llm = HFLLM(HFLLMConfig(trained_chat["path"], max_new_tokens=32, device="cpu"))
    agent = PaperAgent(
        Crawler(llm), Selector(llm), InMemoryPaperSource(demo_papers()), AgentConfig(expand_layers=1, threads_num=1)
    )
    root = agent.run("graph attention networks")
    assert list(root.child) == ["graph attention", "attention on graphs survey"]  # the memorised search session
    nodes = [n for nodes in root.child.values() for n in nodes]
    assert nodes and all(0.0 <= n.select_score <= 1.0 for n in nodes)
    assert json.loads(json.dumps(root.to_dict()))["extra"]["touch_ids"]


def test_raw_format_trains_the_selector_on_its_inference_prompt(tiny64, tmp_path):
    from pasa.llm.hf import HFLLM, HFLLMConfig

    data = tmp_path / "selector.jsonl"
    data.write_text("".join(line for line in open(TRAIN_CHAT).readlines()[:4]))
    out = tmp_path / "out"
    assert (
        sft.main(
            ["--model_name_or_path", tiny64, "--output_dir", str(out), "--dataset_name", str(data)]
            + CPU_ARGS
            + train_args("--prompt_format", "raw", "--max_steps", "40", "--per_device_train_batch_size", "4")
        )
        == 0
    )
    prompts = [json.loads(line)["messages"][0]["content"] for line in data.read_text().splitlines()]
    scores = HFLLM(HFLLMConfig(str(out), device="cpu")).true_prob(prompts)  # raw prompts, as the agent scores
    assert min(scores[0], scores[2]) > max(scores[1], scores[3])


# -- recipes and launch ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sft_selector", "sft_crawler"])
def test_recipes_carry_the_released_hyperparameters(name):
    script_args, args, model_args = sft.parse_args(
        ["--config", str(ROOT / "configs" / "recipes" / f"{name}.yaml"), "--bf16", "false"]
    )
    assert script_args.dataset_name == [f"data/{name}/train.jsonl"] and script_args.prompt_format == "chat"
    assert args.learning_rate == 1e-5 and args.num_train_epochs == 1
    assert args.per_device_train_batch_size == 4 and args.gradient_accumulation_steps == 1
    assert args.gradient_checkpointing and args.max_length == 1024
    assert args.weight_decay == 0.01 and args.warmup_steps == 0.01 and args.completion_only_loss
    assert model_args.attn_implementation == "flash_attention_2" and model_args.dtype == "bfloat16"
    assert args.output_dir == f"results/{name}"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the fallback is for machines without a GPU")
@pytest.mark.parametrize("script", [sft, ppo])
def test_gpu_recipe_falls_back_to_cpu_float32_with_one_warning(script, caplog):
    # the documented single-process line with a bf16 recipe: without CUDA it runs on CPU in float32
    recipe = "sft_selector.yaml" if script is sft else "ppo_crawler.yaml"
    with caplog.at_level(logging.WARNING):
        parsed = script.parse_args(["--config", str(ROOT / "configs" / "recipes" / recipe)])
    train_args = next(a for a in parsed if hasattr(a, "bf16"))
    dtype = next(a.dtype for a in parsed if getattr(a, "dtype", None))
    assert train_args.use_cpu and not train_args.bf16 and dtype == "float32"
    assert sum("no CUDA GPU here: training on CPU in float32" in r.getMessage() for r in caplog.records) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_with_timeout(cmd: list[str], marker: str, timeout: float, cwd: Path, env: dict) -> tuple[str, str, int]:
    """Run ``cmd`` with its output in files. On timeout, kill the launcher's group and the workers (torchrun starts
    them in sessions of their own), found by ``marker`` in their command line, then fail with the output."""
    out, err = cwd / "launch.out", cwd / "launch.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, start_new_session=True, cwd=cwd, env=env)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    if marker in Path(f"/proc/{pid}/cmdline").read_text():
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()
            pytest.fail(f"timed out after {timeout} s\n{out.read_text()[-3000:]}\n{err.read_text()[-3000:]}")
    return out.read_text(), err.read_text(), proc.returncode


def test_launch_script_runs_two_cpu_processes(tiny_checkpoint, tmp_path):
    """scripts/train_sft_crawler.sh (accelerate launch + the crawler recipe) on two CPU processes."""
    from pasa.llm.hf import HFLLM, HFLLMConfig

    out = tmp_path / "out"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's accelerate
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_CONFIG": "configs/accelerate/cpu_2proc.yaml",
        "MAIN_PROCESS_PORT": str(_free_port()),
    }
    cmd = [
        "bash", str(ROOT / "scripts" / "train_sft_crawler.sh"),
        "--model_name_or_path", tiny_checkpoint, "--dataset_name", TRAIN_CHAT, "--output_dir", str(out),
        "--attn_implementation", "sdpa", "--use_cpu", "true", "--max_steps", "3", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", *CPU_ARGS,
    ]  # fmt: skip
    stdout, stderr, returncode = run_with_timeout(cmd, str(out), timeout=180, cwd=tmp_path, env=env)
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "2 process(es)" in stdout
    assert (out / "model.safetensors").exists()
    assert HFLLM(HFLLMConfig(str(out), max_new_tokens=4, device="cpu")).generate(["hi"]) != []


def test_released_flag_names(capsys):
    """The released SFT flags (RELEASED_FLAGS) parse as the flags with the same meaning; other names are refused."""
    script_args, args, model_args = sft.parse_args(
        ["--dataset_name", TRAIN_CHAT, "--max_seq_length", "512", "--warmup_ratio", "0.03", *CPU_ARGS,
         "--torch_dtype", "bfloat16"]
    )  # fmt: skip
    assert script_args.dataset_name == [TRAIN_CHAT] and args.max_length == 512 and args.warmup_steps == 0.03
    assert model_args.dtype == "bfloat16"
    with pytest.raises(SystemExit) as stop:
        sft.parse_args(["--train_files", TRAIN_CHAT, *CPU_ARGS])
    assert stop.value.code == 2
    assert "unrecognized arguments: --train_files" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], True), (["--gradient_checkpointing", "false"], False), (["--activation_checkpointing", "false"], False)],
)
def test_checkpointing_without_the_deprecation_warning(extra, expected):
    """Activation checkpointing is on by default under its current name; the older name still sets it; transformers
    warns about neither."""
    import warnings

    argv = ["--model_name_or_path", "unused", "--output_dir", "unused", *extra]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, cfg, _ = sft.parse_args(argv)
    assert cfg.activation_checkpointing is expected and cfg.gradient_checkpointing is expected
    assert not [w for w in caught if "checkpointing" in str(w.message)]
