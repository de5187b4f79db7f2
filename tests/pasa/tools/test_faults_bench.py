"""bench/faults.py: every injected fault kind ends as a retry that succeeds or a typed error from the tools layer
(never a silent "not found"), fault decisions are seeded per request, and (slow) the whole bench meets its bar."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pasa.tools.http import BadAnswerError, HTTPStatusError, ServiceError
from pasa.tools.sources import OnlinePaperSource
from tests.pasa.tools.test_http import make_client

BENCH = Path(__file__).resolve().parents[3] / "bench" / "faults.py"


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("_bench_faults", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fake_world_pages_parse_and_faults_are_seeded(faults):
    from pasa.tools.ar5iv import parse_ar5iv_html

    doc = parse_ar5iv_html(faults.ar5iv_page(7))
    assert list(doc.section_citations) == faults.SECTIONS and not doc.problems
    a, b = _fresh(faults), _fresh(faults)
    keys = [f"GET /x{i}" for i in range(50)]
    fates_a = {k: [a.draw(k) for _ in range(3)] for k in keys}
    fates_b = {k: [b.draw(k) for _ in range(3)] for k in reversed(keys)}  # another order: the same fates
    assert fates_a == fates_b
    assert 0 < sum(f is not None for fates in fates_a.values() for f in fates) < 150


def _fresh(faults):
    f = faults.Faults(seed=3, rate=0.5, llm_rate=0, crawler_garbage=0)
    f.on = True
    return f


EXPECTED = {  # fault kind -> what the source call raises with one attempt and no retry (None: it succeeds)
    "429": HTTPStatusError,
    "429-retry-0": HTTPStatusError,
    "429-retry-3600": HTTPStatusError,
    "500": HTTPStatusError,
    "503": HTTPStatusError,
    "hang": ServiceError,
    "truncate": ServiceError,
    "garbled": BadAnswerError,
    "empty": BadAnswerError,
    "error-page": BadAnswerError,
}


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("call", ["search", "get_by_id", "get_by_title", "get_sections"])
def test_every_fault_kind_is_a_typed_error_then_the_good_answer(faults, tmp_path, monkeypatch, kind, call):
    monkeypatch.setenv("SERPER_API_KEY", "k")
    monkeypatch.setattr(faults, "HANG_SECONDS", 0.6)
    injector = faults.Faults(seed=0, rate=0, llm_rate=0, crawler_garbage=0)
    injector.on = True
    injector.draw = lambda key, llm=False: kind if injector.on else None  # every request faults while on
    server, url = faults.start_server(injector)
    args = {
        "search": ("find graph search", 4),
        "get_by_id": (faults.paper_id(7),),
        "get_by_title": (faults.paper_title(7),),
        "get_sections": (faults.paper_id(7),),
    }[call]
    try:
        with make_client(tmp_path, max_retries=0, timeout=0.3) as http:
            source = OnlinePaperSource(http, f"{url}/search", f"{url}/api/query", f"{url}/html/{{arxiv_id}}")
            with pytest.raises(EXPECTED[kind]):
                getattr(source, call)(*args)
            injector.on = False
            assert getattr(source, call)(*args)  # the fault is gone: the real answer, not a replayed bad one
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_bench_meets_its_bar_on_a_small_batch(faults, capsys):
    assert faults.main(["--queries", "2", "--fault_rate", "0.3", "--llm_rate", "0", "--max_redo", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "crashes 0" in line and "unlogged skips 0" in line and "lost 0" in line and "replayed-bad-cache 0" in line
    assert "2/2 equal to the fault-free run" in line
