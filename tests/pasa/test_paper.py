import json

import pytest

from pasa.paper import Paper, PaperNode, dumps_tree, loads_tree, normalize_arxiv_id, sort_by_score, title_key

RELEASED_KEYS = ["title", "arxiv_id", "depth", "child", "abstract", "sections", "source", "select_score", "extra"]


def test_to_dict_has_released_keys_in_order():
    root = PaperNode.root("q")
    root.child["q1"] = [
        PaperNode.from_paper(Paper("1", "T", "A", {"s": ["x"]}, "SearchFrom:arxiv"), 0, "Search SearchFrom:arxiv", 0.7)
    ]
    d = root.to_dict()
    assert list(d) == RELEASED_KEYS
    assert list(d["child"]["q1"][0]) == RELEASED_KEYS
    assert d["extra"] == {"touch_ids": [], "crawler_recall_papers": [], "recall_papers": []}
    assert d["depth"] == -1 and d["source"] == "Root" and d["sections"] == ""
    assert loads_tree(dumps_tree(root)).to_dict() == d


def test_from_dict_defaults_match_released():
    node = PaperNode.from_dict({"title": "t", "child": {"s": [{"title": "c"}]}})
    assert (node.arxiv_id, node.depth, node.source, node.select_score, node.sections) == ("", -1, "Root", 0.0, "")
    assert node.child["s"][0].title == "c"


def test_unsectioned_paper_serialises_as_empty_string():
    node = PaperNode.from_paper(Paper("1", "T"), 0, "Search x", 0.1)
    assert json.loads(dumps_tree(node))["sections"] == ""


def test_iter_nodes_is_breadth_first():
    root = PaperNode.from_dict(
        {"child": {"a": [{"title": "1", "child": {"s": [{"title": "3"}]}}, {"title": "2"}], "b": [{"title": "4"}]}}
    )
    assert [n.title for n in root.iter_nodes()] == ["1", "2", "4", "3"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2301.00001", "2301.00001"),
        ("2301.00001v12", "2301.00001"),
        ("arXiv:0704.0001v1", "0704.0001"),
        ("hep-th/9901001v3", "hep-th/9901001"),
        ("math.GT/0309136", "math.GT/0309136"),
        (" 1234.5678 ", "1234.5678"),
    ],
)
def test_normalize_arxiv_id(raw, expected):
    assert normalize_arxiv_id(raw) == expected


def test_title_key_keeps_letters_only():
    assert (
        title_key("BERT: Pre-training of Deep\nBidirectional Transformers (2019)")
        == "bertpretrainingofdeepbidirectionaltransformers"
    )
    assert title_key("Über Graphen") == "übergraphen"  # str.isalpha, as released keep_letters


def test_sort_by_score_is_stable():
    nodes = [PaperNode(title=str(i), select_score=s) for i, s in enumerate([0.5, 0.9, 0.5, 0.1])]
    assert [n.title for n in sort_by_score(nodes)] == ["1", "0", "2", "3"]
