import math

import pytest

from pasa.agent import AgentConfig, PaperAgent
from pasa.crawler import Crawler
from pasa.llm import load_llm
from pasa.llm.openai import LLMServerError, OpenAILLM, OpenAILLMConfig, parse_first_token_true_prob
from pasa.prompts import render_search_prompt, render_select_prompt
from pasa.selector import Selector
from pasa.tools.sources import InMemoryPaperSource
from tests.fakes import OpenAIStub, openai_server, paper


def test_generate_uses_chat_completions_with_stripped_prompt():
    stub = OpenAIStub(reply=lambda p: f"[Search] {len(p)}\n[StopSearch]")
    with openai_server(stub) as url:
        llm = OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b"))
        prompt = render_search_prompt("graph neural networks") + "  \n"
        (reply,) = llm.generate([prompt])
    path, body = stub.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": prompt.strip()}]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert reply == f"[Search] {len(prompt.strip())}\n[StopSearch]"


def test_sampling_parameters_are_sent():
    stub = OpenAIStub()
    with openai_server(stub) as url:
        OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b")).generate(["x"], sample=True)
    assert stub.requests[-1][1]["temperature"] == 2.0 and stub.requests[-1][1]["top_p"] == 0.8


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_true_prob_from_first_token_logprobs(endpoint):
    stub = OpenAIStub(true_prob=lambda p: 0.9 if "Title: good" in p else 0.2)
    prompts = [render_select_prompt("q", "good", "a"), render_select_prompt("q", "bad", "a")]
    with openai_server(stub) as url:
        llm = OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b", selector_endpoint=endpoint))
        probs = llm.true_prob(prompts)
    assert probs == pytest.approx([0.9, 0.2])
    path, body = stub.requests[-1]
    if endpoint == "completions":
        assert path == "/v1/completions" and body["prompt"] in prompts and body["logprobs"] == 20
    else:
        assert path == "/v1/chat/completions" and body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["max_tokens"] == 1


def test_true_token_missing_from_top_logprobs_scores_zero():
    # top_logprobs=1 and P(True)=0.3: only the top token ("False", 0.7) comes back, so "True" is absent -> 0.0
    stub = OpenAIStub(true_prob=lambda p: 0.3)
    with openai_server(stub) as url:
        llm = OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b", top_logprobs=1))
        assert llm.true_prob(["Decision:"]) == [0.0]


def test_model_discovered_from_server_and_url_spec():
    stub = OpenAIStub(model="served-crawler")
    with openai_server(stub) as url:
        llm = load_llm(url)
        assert isinstance(llm, OpenAILLM)
        assert llm.generate(["hi"]) == ["[Search] q1\n[StopSearch]"]
        assert load_llm(f"{url}#served-crawler").config.model == "served-crawler"


def test_http_error_raises_clear_error():
    stub = OpenAIStub()
    stub.fail_next = [503]
    with openai_server(stub) as url:
        llm = OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b", max_retries=0))
        with pytest.raises(LLMServerError, match="503"):
            llm.generate(["x"])


def test_transient_server_errors_are_retried():
    # one 429 and one 503 cost two retries, not the query (without retries, one fault failed the whole query)
    stub = OpenAIStub()
    stub.fail_next = [429, 503]
    with openai_server(stub) as url:
        llm = OpenAILLM(OpenAILLMConfig(base_url=url, model="pasa-7b", max_retries=2))
        assert llm.generate(["x"]) == ["[Search] q1\n[StopSearch]"]
        stub.fail_next = [503, 503, 503]
        with pytest.raises(LLMServerError, match="503"):
            llm.generate(["x"])


def test_api_key_from_environment_only(monkeypatch):
    seen = {}

    class Session:
        def post(self, url, json, headers, timeout):
            seen.update(headers)

            class R:
                status_code = 200

                def json(self):
                    return {"choices": [{"message": {"content": "ok"}}]}

            return R()

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-from-env")
    llm = OpenAILLM(OpenAILLMConfig(base_url="http://unused/v1", model="m"), session=Session())
    assert llm.generate(["x"]) == ["ok"]
    assert seen["Authorization"] == "Bearer test-key-from-env"


def test_parse_first_token_errors_on_missing_logprobs():
    with pytest.raises(LLMServerError):
        parse_first_token_true_prob({"logprobs": None})
    assert parse_first_token_true_prob({"logprobs": {"top_logprobs": [{"True": math.log(0.5)}]}}) == pytest.approx(0.5)


def test_agent_loop_over_openai_backends():
    """The whole loop with crawler and selector served over HTTP (the PaSa-GPT-4o / vLLM configuration)."""
    crawler_stub = OpenAIStub(reply=lambda p: "[Search] alpha\n[StopSearch]" if "User Query" in p else "[StopExpand]")
    selector_stub = OpenAIStub(true_prob=lambda p: 0.8 if "Title: Paper 0001" in p else 0.1)
    source = InMemoryPaperSource(
        [paper("2401.00001", "Paper 0001"), paper("2401.00002", "Paper 0002")], {"alpha": ["2401.00001", "2401.00002"]}
    )
    with openai_server(crawler_stub) as c_url, openai_server(selector_stub) as s_url:
        agent = PaperAgent(Crawler(load_llm(c_url)), Selector(load_llm(s_url)), source, AgentConfig())
        root = agent.run("find alpha papers")
    assert [n.arxiv_id for n in root.child["alpha"]] == ["2401.00001", "2401.00002"]
    assert [round(n.select_score, 6) for n in root.child["alpha"]] == [0.8, 0.1]
    assert root.extra["recall_papers"] == ["Paper 0001"]
