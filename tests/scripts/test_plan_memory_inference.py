"""scripts/plan_memory.py --inference: the agent's two models, local or served, 1 or 2 GPUs, bf16 / int8 / nf4."""

from __future__ import annotations

import pytest

from tests.fakes import load_script

plan_memory = load_script("plan_memory")


def _args(*argv: str):
    return plan_memory.make_parser().parse_args(["--inference", *argv])


def _rows(*argv: str) -> dict[tuple[str, str], float]:
    return {(layout, quant): gb for layout, quant, _, gb, _ in plan_memory.inference_plan(_args(*argv))}


def test_bf16_weights_are_two_bytes_per_parameter_and_quantization_shrinks_the_linear_layers():
    shape = plan_memory.load_shape("qwen2.5-7b", None)
    bf16, int8, nf4 = (plan_memory.inference_weights_gb(shape, q) for q in ("bf16", "int8", "nf4"))
    assert bf16 == pytest.approx(2 * shape.causal_lm_params / 1e9)
    embeddings = 2 * shape.vocab * shape.hidden * 2 / 1e9  # input embeddings and LM head stay 16 bit
    assert embeddings < nf4 < int8 < bf16
    assert int8 - embeddings == pytest.approx((bf16 - embeddings) / 2, rel=0.01)


def test_what_fits_a_24_gb_card():
    rows = _rows()
    both = "local, both models on 1 GPU"
    assert rows[(both, "bf16")] > 24 and rows[(both, "nf4")] <= 24
    assert rows[("local, one model per GPU", "bf16")] <= 24  # one 7B model in bf16 per 24 GB card
    assert rows[("served (vLLM), both servers on 1 GPU", "bf16")] > 24
    smaller_calls = _rows("--max_batch_tokens", "8192")
    assert smaller_calls[(both, "int8")] < rows[(both, "int8")]
    assert smaller_calls[(both, "int8")] <= 24 < rows[(both, "int8")]


def test_the_transient_of_a_call_grows_with_its_tokens():
    shape = plan_memory.load_shape("qwen2.5-7b", None)
    one, two = plan_memory.forward_transient_gb(shape, 8192), plan_memory.forward_transient_gb(shape, 16384)
    assert two == pytest.approx(2 * one)
    assert one > shape.kv_bytes_per_token() * 8192 / 1e9  # KV cache plus the prefill's MLP tensors


def test_cli_prints_the_table(capsys):
    assert plan_memory.main(["--inference"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("INFERENCE memory plan: crawler + selector, qwen2.5-7b")
    assert out[1] == "| layout | weights | GPUs | GB per GPU | 24 GB | 48 GB | 80 GB | what |"
    assert len([line for line in out if line.startswith("| local")]) == 6


def test_quantized_loading_is_cuda_only_and_named():
    from pasa.llm.hf import bitsandbytes_config

    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        bitsandbytes_config("8bit", "cpu")
    with pytest.raises(ValueError, match="must be one of 8bit, 4bit"):
        bitsandbytes_config("3bit", "cuda")
    config = bitsandbytes_config("4bit", "cuda")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert bitsandbytes_config("8bit", "cuda:1").load_in_8bit
