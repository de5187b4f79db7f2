"""Title index: arXiv metadata snapshot -> title key -> paper, with exact-title matching."""

from __future__ import annotations

import gzip
import os
import shutil
import threading

import pytest

from pasa.tools.arxiv_api import match_title
from pasa.tools.title_index import TitleIndex, build_title_index, iter_metadata, parse_metadata_record

METADATA = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "unarxive", "arxiv_metadata.jsonl")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ti") / "title_index"
    problems: list[str] = []
    manifest = build_title_index(iter_metadata(METADATA, problems), str(out), source="fixture")
    assert len(problems) == 1 and ":7:" in problems[0]  # the truncated line, by file:line
    assert manifest["papers"] == 9 and manifest["titles_not_indexed"] == 1
    return str(out)


def test_lookups(index_dir):
    index = TitleIndex(index_dir)
    assert len(index) == 9
    paper = index.get_by_title("attention is ALL you need.")
    assert paper.arxiv_id == "1706.03762" and paper.published == "20170612" and paper.sections is None
    assert index.get_by_title("Attention is all you need, revisited") is None  # exact match only
    assert index.get_by_title("") is None and index.get_by_title("1234") is None
    assert index.get_by_id("arXiv:1706.03762v5").title == "Attention Is All You Need"
    assert index.get_by_id("hep-th/9901001").published == "19990101"
    assert index.get_record("2212.11770").categories == "cs.RO cs.AI"
    assert index.get_by_id("9999.99999") is None
    # the same decision as the arXiv API's exact-title match
    candidates = [index.get_by_id(i) for i in ("2011.12720", "1706.03762")]
    assert match_title(candidates, "ATTENTION IS ALL YOU NEED").arxiv_id == index.get_id_by_title(
        "ATTENTION IS ALL YOU NEED"
    )


def test_first_paper_keeps_a_shared_title_key(index_dir):
    index = TitleIndex(index_dir)
    assert index.get_by_title("Attention is all you need!").arxiv_id == "1706.03762"
    assert index.get_by_id("2401.00001").title == "Attention is all you need!"  # still known by id


def test_is_a_paper_source_lookup(index_dir):
    from pasa.tools.sources import TitleLookupSource

    source = TitleLookupSource(TitleIndex(index_dir))
    assert source.get_by_title("3D Scene Graph: A structure for unified semantics, 3D space, and camera").arxiv_id == (
        "1910.02527"
    )


def test_threads(index_dir):
    index = TitleIndex(index_dir)
    found: list[str] = []

    def work():
        for _ in range(50):
            found.append(index.get_by_title("Attention Is All You Need").arxiv_id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == ["1706.03762"] * 200


def test_gzip_input_rebuild_and_refusals(tmp_path):
    gz = tmp_path / "meta.jsonl.gz"
    with open(METADATA, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    out = tmp_path / "ti"
    build_title_index(iter_metadata(str(gz)), str(out))
    build_title_index(iter_metadata(str(gz)), str(out))  # an index there is replaced
    assert len(TitleIndex(str(out))) == 9
    assert TitleIndex(str(out / "title_index.sqlite")).get_by_id("1706.03762") is not None  # the file works too
    other = tmp_path / "data"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_title_index(iter_metadata(str(gz)), str(other))
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError):
        TitleIndex(str(tmp_path / "missing"))


def test_parse_metadata_record_errors():
    with pytest.raises(ValueError, match="'title'"):
        parse_metadata_record({"id": "1"})
    rec = parse_metadata_record(
        {"id": "2", "title": "T", "versions": [{"created": "garbage"}], "update_date": "2020-01-02"}
    )
    assert rec.published == "20200102" and rec.abstract == "" and rec.categories == ""
