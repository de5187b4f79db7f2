import json
from pathlib import Path

import pytest

from pasa import prompts
from pasa.prompts import (
    format_section_names,
    parse_expand_sections,
    parse_search_queries,
    render_expand_prompt,
    render_search_prompt,
    render_select_prompt,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "prompts.json"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "prompts.json"


@pytest.mark.parametrize("path", [FIXTURE, SHARED], ids=["fixture", "shared"])
def test_templates_byte_identical_to_released(path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    released = json.loads(path.read_text(encoding="utf-8"))
    assert prompts.TEMPLATES == released
    for name, template in released.items():
        assert prompts.TEMPLATES[name].encode("utf-8") == template.encode("utf-8")


def test_render_matches_released_formatting():
    assert render_search_prompt(" q ") == prompts.GENERATE_QUERY.format(user_query=" q ").strip()
    p = render_expand_prompt("q", "T", "A", ["1 Intro", "2 Method"])
    assert p.endswith("Title: T\nAbstract: A\nSections: dict_keys(['1 Intro', '2 Method'])")
    assert render_expand_prompt("q", "T", "A", ["1 Intro"], sections_style="json").endswith('Sections: ["1 Intro"]')
    # the selector prompt is not stripped and ends with "Decision:" (fed raw, no chat template)
    assert render_select_prompt("q", "T", "A").endswith("\nDecision:")
    with pytest.raises(ValueError):
        format_section_names(["x"], style="yaml")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("[Search] a\n[Search] b\n[StopSearch]", ["a", "b"]),
        ("[Search]   spaced query  \n[StopSearch]", ["spaced query"]),
        ("[Search] a\n[Search] truncated at the end", ["a"]),  # released regex needs a following "["
        ("[Search] multi\nline\n[StopSearch]", ["multi\nline"]),
        ("[Search] \n[Search] x\n[StopSearch]", ["x"]),  # empty queries dropped
        ("", []),
        ("no actions at all", []),
        ("[Search [Search] ok [", ["ok"]),
        ("]]] [[[ Search]x[", ["x"]),
        ("[Expand] 1 Intro\n[StopExpand]", []),
    ],
)
def test_parse_search_queries(reply, expected):
    assert parse_search_queries(reply) == expected


def test_parse_search_queries_limit():
    reply = "".join(f"[Search] q{i}\n" for i in range(8)) + "[StopSearch]"
    assert parse_search_queries(reply, limit=5) == [f"q{i}" for i in range(5)]


@pytest.mark.parametrize(
    "reply, names, expected",
    [
        ("[Expand] 1 Intro\n[Expand] 2 Method\n[StopExpand]", ["1 Intro", "2 Method"], ["1 Intro", "2 Method"]),
        ("[Expand] 1 intro\n[StopExpand]", ["1 Intro"], []),  # exact match only
        ("[Expand] 1 Intro\n[Expand] 1 Intro\n[StopExpand]", ["1 Intro"], ["1 Intro"]),
        ("[Expand] 1 Intro", ["1 Intro"], []),  # truncated
        ("[StopExpand]", ["1 Intro"], []),
        ("[Expand] anything\n[", None, ["anything"]),
    ],
)
def test_parse_expand_sections(reply, names, expected):
    assert parse_expand_sections(reply, names) == expected
