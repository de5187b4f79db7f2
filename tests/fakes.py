"""Test doubles and helpers shared across the suite: a loopback OpenAI-protocol server, scripted agents, scripts."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pasa.llm.scripted import ScriptedLLM, prompt_title, prompt_user_query  # noqa: F401  (re-exported)
from pasa.paper import Paper
from pasa.tools.sources import InMemoryPaperSource  # noqa: F401  (re-exported)

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts are launchers, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def paper(arxiv_id: str, title: str | None = None, sections=None, published: str | None = None) -> Paper:
    """A test paper whose title and abstract derive from its id unless given."""
    return Paper(
        arxiv_id, title or f"Paper {arxiv_id}", f"Abstract of {arxiv_id}.", sections, "SearchFrom:test", published
    )


class OpenAIStub:
    """Behaviour of the loopback server: ``reply(messages_or_prompt) -> text``, ``true_prob(prompt) -> p``."""

    def __init__(
        self, reply=lambda prompt: "[Search] q1\n[StopSearch]", true_prob=lambda prompt: 0.75, model="pasa-7b"
    ):
        self.reply = reply
        self.true_prob = true_prob
        self.model = model
        self.requests: list[tuple[str, dict]] = []
        self.fail_next: list[int] = []  # HTTP status codes to return for the next requests


def _top_logprobs(p_true: float, k: int) -> dict[str, float]:
    top = {"True": math.log(p_true) if p_true > 0 else -1e9, "False": math.log(max(1e-9, 1 - p_true))}
    top = dict(sorted(top.items(), key=lambda kv: -kv[1]))
    return dict(list(top.items())[:k])


def _handler(stub: OpenAIStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]})
            self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            stub.requests.append((self.path, body))
            if stub.fail_next:
                return self._send(stub.fail_next.pop(0), {"error": {"message": "injected failure"}})
            if body.get("model") != stub.model:
                return self._send(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
            if self.path == "/v1/chat/completions":
                prompt = body["messages"][-1]["content"]
                if body.get("logprobs"):
                    top = _top_logprobs(stub.true_prob(prompt), body.get("top_logprobs", 1))
                    first = next(iter(top))
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": first},
                        "logprobs": {
                            "content": [
                                {
                                    "token": first,
                                    "logprob": top[first],
                                    "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()],
                                }
                            ]
                        },
                        "finish_reason": "length",
                    }
                else:
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": stub.reply(prompt)},
                        "finish_reason": "stop",
                    }
                return self._send(
                    200, {"id": "x", "object": "chat.completion", "model": stub.model, "choices": [choice]}
                )
            if self.path == "/v1/completions":
                prompt = body["prompt"]
                if body.get("logprobs"):
                    top = _top_logprobs(stub.true_prob(prompt), body["logprobs"])
                    first = next(iter(top))
                    choice = {
                        "index": 0,
                        "text": first,
                        "logprobs": {"tokens": [first], "token_logprobs": [top[first]], "top_logprobs": [top]},
                        "finish_reason": "length",
                    }
                else:
                    choice = {"index": 0, "text": stub.reply(prompt), "logprobs": None, "finish_reason": "stop"}
                return self._send(
                    200, {"id": "x", "object": "text_completion", "model": stub.model, "choices": [choice]}
                )
            self._send(404, {"error": {"message": "not found"}})

    return Handler


@contextmanager
def openai_server(stub: OpenAIStub):
    """Serve ``stub`` on 127.0.0.1 (a free port); yields the base URL ending in /v1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
