"""Model backends behind one small interface.

Both the Crawler and the Selector talk to an ``LLM``: ``generate`` for the Crawler (chat template, greedy by
default), ``true_prob`` for the Selector (P(first generated token = "True") on the raw prompt). Backends:
``pasa.llm.hf.HFLLM`` (a local transformers model) and ``pasa.llm.openai.OpenAILLM`` (any OpenAI-compatible
server). They are imported lazily so that ``import pasa.llm`` needs neither torch nor an HTTP client.
``pasa.llm.batcher.MicroBatcher`` gathers the agent's single requests into calls; it reads a backend's optional
``preferred_batch_size`` and ``max_concurrency`` attributes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LLM(Protocol):
    def generate(self, prompts: list[str], chat: bool = True, sample: bool = False) -> list[str]:
        """One reply per prompt. ``chat``: wrap each prompt as one user turn of the chat template."""
        ...

    def true_prob(self, prompts: list[str]) -> list[float]:
        """P(first generated token is the ``True`` token) for each raw prompt, over the full vocabulary."""
        ...


def load_llm(spec: str, **kwargs) -> LLM:
    """Build a backend from a command-line spec.

    ``spec`` is a local checkpoint directory (HF backend) or ``http(s)://host:port/v1[#model]`` for an
    OpenAI-compatible server (the model name after ``#``; defaults to the server's only model).
    Keyword arguments go to the backend's config.
    """
    if spec.startswith(("http://", "https://")):
        from pasa.llm.openai import OpenAILLM, OpenAILLMConfig

        base_url, _, model = spec.partition("#")
        keys = OpenAILLMConfig.__dataclass_fields__
        return OpenAILLM(
            OpenAILLMConfig(base_url=base_url, model=model or None, **{k: v for k, v in kwargs.items() if k in keys})
        )
    from pasa.llm.hf import HFLLM, HFLLMConfig

    keys = HFLLMConfig.__dataclass_fields__
    return HFLLM(HFLLMConfig(model_name_or_path=spec, **{k: v for k, v in kwargs.items() if k in keys}))
