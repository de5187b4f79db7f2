"""`pasa tiny`: the released layout filled with tiny stand-ins; the scripted tiny crawler."""

import pytest

from pasa import cli
from pasa.tiny import CRAWLER_REPLY, QUERIES, build_tiny


def test_tiny_queries_answer_with_database_papers(tiny_artifacts):
    import json

    titles = set(json.loads((tiny_artifacts / "data/paper_database/id2paper.json").read_text()).values())
    assert all(set(answers) <= titles for _, answers in QUERIES)
    for name in ("pasa-7b-crawler", "pasa-7b-selector", "Qwen2.5-7B-Instruct"):
        assert (tiny_artifacts / "checkpoints" / name / "config.json").exists()
    assert (tiny_artifacts / "PASA_TINY").exists()


def test_tiny_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileExistsError):
        build_tiny(str(tmp_path))
    assert cli.main(["tiny", "--output_dir", str(tmp_path)]) == 2


def test_tiny_crawler_replies_its_script_through_the_hf_backend(tiny_artifacts):
    from pasa.llm.hf import HFLLM, HFLLMConfig
    from pasa.prompts import parse_expand_sections, parse_search_queries, render_search_prompt

    llm = HFLLM(HFLLMConfig(str(tiny_artifacts / "checkpoints" / "pasa-7b-crawler"), device="cpu"))
    greedy = llm.generate([render_search_prompt(q) for q, _ in QUERIES[:2]], chat=True, sample=False)
    sampled = llm.generate([render_search_prompt(QUERIES[0][0])], chat=True, sample=True)
    assert greedy == [CRAWLER_REPLY, CRAWLER_REPLY] and sampled == [CRAWLER_REPLY]
    assert parse_search_queries(CRAWLER_REPLY) == ["retrieval augmented generation", "graph neural networks"]
    assert parse_expand_sections(CRAWLER_REPLY, ["1 Intro", "2 Related Work"]) == ["2 Related Work"]


def test_the_demo_next_steps_name_the_ways_on():
    from pasa.demo import DEMO_NEXT_STEPS

    for needed in ("pasa tiny", "pasa download", "SERPER_API_KEY", "--crawler_path", "--selector_path"):
        assert needed in DEMO_NEXT_STEPS
    assert "--crawler " not in DEMO_NEXT_STEPS and "--selector " not in DEMO_NEXT_STEPS


@pytest.mark.slow
def test_the_demo_next_steps_run_as_written(tmp_path):
    """Every command the demo prints runs: `pasa tiny`, then both `pasa run` lines inside the tiny folder."""
    import os
    import shlex
    import subprocess
    import sys

    from pasa.demo import DEMO_NEXT_STEPS

    text = DEMO_NEXT_STEPS.replace("\\\n", " ")
    commands = [line.split("    #")[0].strip() for line in text.splitlines() if line.startswith("  pasa ")]
    assert len(commands) == 3
    tiny = tmp_path / "pasa-tiny"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    script = "set -e\n" + "\n".join(c.replace("/tmp/pasa-tiny", shlex.quote(str(tiny))) for c in commands)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tiny / "results/one/0.json").exists()
