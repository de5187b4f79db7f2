"""pasa.llm.attn: a flash-attention request falls back to sdpa, with one warning, where flash-attn cannot run."""

from __future__ import annotations

import logging

import pytest

from pasa.llm import attn


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(attn, "_warned", set())


@pytest.mark.parametrize("name", [None, "sdpa", "eager"])
def test_non_flash_requests_pass_through(name):
    assert attn.resolve_attn_implementation(name) == name


def test_missing_flash_attn_falls_back_to_sdpa_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(attn, "flash_attention_unavailable", lambda name: "the flash-attn package is not installed")
    with caplog.at_level(logging.WARNING, logger="pasa.llm.attn"):
        assert attn.resolve_attn_implementation("flash_attention_2") == "sdpa"
        assert attn.resolve_attn_implementation("flash_attention_2") == "sdpa"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "flash-attn" in warnings[0].getMessage() and "sdpa" in warnings[0].getMessage()


def test_usable_flash_attention_is_kept(monkeypatch):
    monkeypatch.setattr(attn, "flash_attention_unavailable", lambda name: None)
    assert attn.resolve_attn_implementation("flash_attention_2") == "flash_attention_2"


def test_this_machine_reports_why_flash_attention_cannot_run():
    import torch
    from transformers.utils import is_flash_attn_2_available

    if is_flash_attn_2_available() and torch.cuda.is_available():
        pytest.skip("flash-attn runs here")
    assert attn.flash_attention_unavailable("flash_attention_2")


def test_recipe_model_loads_on_cpu_despite_flash_attention(tiny_checkpoint, caplog):
    """The released recipes ask for flash_attention_2; on this CPU machine the SFT script still builds its model."""
    from transformers import AutoModelForCausalLM

    if attn.flash_attention_unavailable("flash_attention_2") is None:
        pytest.skip("flash-attn runs here")
    name = attn.resolve_attn_implementation("flash_attention_2")
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, attn_implementation=name)
    assert model.config._attn_implementation == "sdpa"
