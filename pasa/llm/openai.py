"""Any OpenAI-compatible server as an ``LLM``: vLLM/SGLang serving pasa-7b, or OpenAI for PaSa-GPT-4o.

* ``generate``: ``POST /chat/completions`` with the prompt as one user turn (``chat=True``), or ``POST
  /completions`` with the raw prompt (``chat=False``). Greedy (``temperature=0``) unless ``sample``.
* ``true_prob``: the Selector's score. With ``selector_endpoint="completions"`` (default; vLLM and SGLang have it)
  the raw prompt goes to ``/completions`` with ``max_tokens=1`` and ``logprobs=top_logprobs``: the score is
  ``exp(logprob)`` of the token ``"True"`` in the first position's top logprobs, as the released local scorer
  (raw prompt, no chat template). With ``"chat"`` (OpenAI models have no completions endpoint) the prompt is one
  user turn and the first token's ``top_logprobs`` are used the same way.

When ``"True"`` is not among the returned top logprobs its probability is below the smallest one returned (at most
1 / top_logprobs), so the paper is certainly not selected (threshold 0.5); the score is then 0.0 and a debug line
is logged. Ranking metrics (Recall@k) treat such papers as tied at the bottom.

The API key is read from ``OPENAI_API_KEY`` (or the variable named by ``api_key_env``) at call time; never logged.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class LLMServerError(RuntimeError):
    """The server answered with an error or an unexpected payload."""


@dataclass
class OpenAILLMConfig:
    base_url: str = field(metadata={"help": "Server URL up to /v1, e.g. http://localhost:8000/v1."})
    model: str | None = field(default=None, metadata={"help": "Model name; None = the server's first model."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the key."})
    max_new_tokens: int = field(default=512, metadata={"help": "max_tokens of crawler replies (released: 512)."})
    temperature: float = field(default=2.0, metadata={"help": "Sampling temperature when sample=True."})
    top_p: float = field(default=0.8, metadata={"help": "Nucleus sampling when sample=True."})
    selector_endpoint: str = field(default="completions", metadata={"help": "'completions' (raw prompt) or 'chat'."})
    top_logprobs: int = field(default=20, metadata={"help": "Top logprobs requested for the first token."})
    true_token: str = field(default="True", metadata={"help": "Token whose probability is the selector score."})
    concurrency: int = field(default=8, metadata={"help": "Requests in flight at once for a batch of prompts."})
    timeout: float = field(
        default_factory=lambda: float(os.environ.get("PASA_LLM_TIMEOUT") or 120.0),
        metadata={"help": "Seconds per request (env PASA_LLM_TIMEOUT; HttpConfig.llm_timeout)."},
    )
    max_retries: int = field(
        default_factory=lambda: int(os.environ.get("PASA_LLM_RETRIES") or 3),
        metadata={
            "help": "Retries of a request that got 429/5xx, a timeout or a 200 that is not JSON (env "
            "PASA_LLM_RETRIES). Safe: a greedy reply is the same on a retry, a sampled one is a fresh sample."
        },
    )


# -- pure payload handling ------------------------------------------------------------------------------------
def parse_first_token_true_prob(choice: dict[str, Any], true_token: str = "True") -> float:
    """P(true_token) at the first generated position from one ``choices[i]`` of a completions or chat response.

    >>> parse_first_token_true_prob({"logprobs": {"top_logprobs": [{"True": -0.1, "False": -2.4}]}})  # doctest: +ELLIPSIS
    0.904...
    >>> parse_first_token_true_prob({"logprobs": {"content": [{"top_logprobs": [{"token": "False", "logprob": -0.01}]}]}})
    0.0
    """
    logprobs = choice.get("logprobs") or {}
    if "content" in logprobs:  # chat completions: content[0].top_logprobs = [{token, logprob}, ...]
        content = logprobs.get("content") or []
        if not content:
            raise LLMServerError("chat response has no logprobs content; does the server support logprobs?")
        top = {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []}
    else:  # completions: top_logprobs = [{token: logprob, ...}, ...]
        tops = logprobs.get("top_logprobs") or []
        if not tops:
            raise LLMServerError("completion response has no top_logprobs; pass logprobs>0 support on the server")
        top = tops[0] or {}
    if true_token not in top:
        logger.debug("%r not in the first token's top logprobs %s; score 0.0", true_token, sorted(top))
        return 0.0
    return math.exp(top[true_token])


def _json_response(resp):
    """The response itself once its body parses as JSON (raises otherwise, so the HTTP layer retries)."""
    resp.json()
    return resp


class _UncheckedClient:
    """``HttpClient`` calls that return error responses (this backend reports them itself) and skip the cache."""

    def __init__(self, http):
        self.http = http

    def post(self, url: str, **kwargs):
        # a 200 whose body is not JSON is retried like a 503 (``fetch`` validates before returning)
        return self.http.fetch("POST", url, _json_response, cache=False, check_status=False, **kwargs)

    def get(self, url: str, **kwargs):
        return self.http.get(url, cache=False, check_status=False, **kwargs)


class OpenAILLM:
    """``LLM`` over HTTP. ``session``: any object with ``post(url, json=, headers=, timeout=)`` returning a
    response with ``status_code`` and ``json()``. Default: the shared ``pasa.tools.http.HttpClient`` with the
    response cache off (model answers are never cached) and ``max_retries`` retries of 429/5xx/timeouts/non-JSON
    answers; what still fails surfaces as ``LLMServerError``."""

    def __init__(self, config: OpenAILLMConfig, session=None):
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        if session is None:
            from pasa.tools.http import HttpClient, HttpConfig

            session = _UncheckedClient(
                HttpClient(HttpConfig(no_cache=True, http_retries=config.max_retries, http_timeout=config.timeout))
            )
        self.session = session
        self._model = config.model

    # -- what the agent's micro-batcher reads ----------------------------------------------------------------
    @property
    def max_concurrency(self) -> int:
        """Agent-level calls in flight: a server overlaps concurrent requests, so prompts go out as they come."""
        return max(1, self.config.concurrency)

    # no cap: the micro-batcher splits what is waiting over the free call slots; each call fans its prompts out as
    # concurrent requests (``concurrency``), so a stage of n prompts is about one request's latency, not n.
    preferred_batch_size = 0

    # -- transport ------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            resp = self.session.post(url, json=payload, headers=self._headers(), timeout=self.config.timeout)
        except LLMServerError:
            raise
        except Exception as err:  # the HTTP layer's ServiceError after its retries: one error type for callers
            raise LLMServerError(f"POST {url}: {err}") from err
        if resp.status_code != 200:
            raise LLMServerError(f"POST {url} -> HTTP {resp.status_code}: {str(getattr(resp, 'text', ''))[:200]}")
        try:
            return resp.json()
        except ValueError as err:
            raise LLMServerError(f"POST {url}: response is not JSON ({err})") from err

    @property
    def model(self) -> str:
        if self._model is None:
            get = getattr(self.session, "get", None)
            if get is None:
                import requests

                get = requests.get
            resp = get(f"{self.base_url}/models", headers=self._headers(), timeout=self.config.timeout)
            if resp.status_code != 200:
                raise LLMServerError(f"GET {self.base_url}/models -> HTTP {resp.status_code}; pass a model name")
            data = resp.json().get("data") or []
            if not data:
                raise LLMServerError(f"{self.base_url} lists no models; pass a model name (URL#model)")
            self._model = data[0]["id"]
        return self._model

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(fn, items))

    # -- LLM protocol --------------------------------------------------------------------------------------
    def _sampling(self, sample: bool) -> dict[str, Any]:
        if sample:
            return {"temperature": self.config.temperature, "top_p": self.config.top_p}
        return {"temperature": 0.0}

    def _generate_one(self, prompt: str, chat: bool, sample: bool) -> str:
        common = {"model": self.model, "max_tokens": self.config.max_new_tokens, **self._sampling(sample)}
        try:
            if chat:
                out = self._post(
                    "/chat/completions", {**common, "messages": [{"role": "user", "content": prompt.strip()}]}
                )
                return out["choices"][0]["message"]["content"] or ""
            out = self._post("/completions", {**common, "prompt": prompt})
            return out["choices"][0]["text"]
        except (KeyError, IndexError, TypeError) as err:
            raise LLMServerError(f"unexpected response shape from {self.base_url}: {err!r}") from err

    def generate(self, prompts: list[str], chat: bool = True, sample: bool = False) -> list[str]:
        return self._map(lambda p: self._generate_one(p, chat, sample), prompts)

    def _true_prob_one(self, prompt: str) -> float:
        k = self.config.top_logprobs
        common = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        if self.config.selector_endpoint == "chat":
            payload = {
                **common,
                "messages": [{"role": "user", "content": prompt}],
                "logprobs": True,
                "top_logprobs": k,
            }
            out = self._post("/chat/completions", payload)
        elif self.config.selector_endpoint == "completions":
            out = self._post("/completions", {**common, "prompt": prompt, "logprobs": k})
        else:
            raise ValueError(
                f"selector_endpoint must be 'completions' or 'chat', not {self.config.selector_endpoint!r}"
            )
        try:
            choice = out["choices"][0]
        except (KeyError, IndexError, TypeError) as err:
            raise LLMServerError(f"unexpected response shape from {self.base_url}: {err!r}") from err
        return parse_first_token_true_prob(choice, self.config.true_token)

    def true_prob(self, prompts: list[str]) -> list[float]:
        return self._map(self._true_prob_one, prompts)
