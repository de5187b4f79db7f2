import json
import logging
import zipfile

import pytest

from pasa.demo import demo_papers
from pasa.paper import Paper, title_key
from pasa.tools.paper_db import PaperDB, build_paper_db, parse_db_record
from pasa.tools.sources import ChainedPaperSource, InMemoryPaperSource, PaperDBSource


def make_db(tmp_path, papers=None):
    papers = papers if papers is not None else demo_papers()
    zip_path, id_path = str(tmp_path / "db.zip"), str(tmp_path / "id2paper.json")
    assert build_paper_db(papers, zip_path, id_path) == len(papers)
    return zip_path, id_path


def test_released_layout(tmp_path):
    zip_path, id_path = make_db(tmp_path)
    papers = demo_papers()
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(title_key(p.title) for p in papers)
        rec = json.loads(zf.read(title_key(papers[6].title)))
    assert set(rec) >= {"title", "abstract", "sections"}
    assert json.load(open(id_path))[papers[0].arxiv_id] == papers[0].title


def test_lookup_by_id_title_and_sections(tmp_path):
    db = PaperDBSource(*make_db(tmp_path))
    p = db.get_by_id("2312.10997v2")
    assert p.title.startswith("Retrieval-Augmented Generation for Large") and p.source == "SearchFrom:local_paper_db"
    assert p.published == "20231218"
    assert (
        db.get_by_title("retrieval augmented generation for large language models a survey").arxiv_id == "2312.10997"
    )
    assert "2 Overview of RAG" in db.get_sections("2312.10997")
    assert db.get_sections("1706.03762") is None  # in the DB, but without sections
    assert db.get_by_id("9999.99999") is None and db.get_by_title("nope") is None
    assert db.search("anything", 10) == []


def test_corrupt_entry_is_a_logged_skip(tmp_path, caplog):
    zip_path, id_path = make_db(tmp_path, [Paper("2401.00001", "Good paper"), Paper("2401.00002", "Bad paper")])
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("badpaperx", "{not json")
    ids = json.load(open(id_path))
    ids["2401.00003"] = "Bad Paper X"
    json.dump(ids, open(id_path, "w"))
    db = PaperDB(zip_path, id_path)
    assert db.get_by_id("2401.00003") is None and "not valid JSON" in caplog.text
    assert db.get_by_id("2401.00001").title == "Good paper"


def test_parse_db_record_requires_title():
    try:
        parse_db_record("1", {"abstract": "x"})
    except KeyError as err:
        assert "title" in str(err)
    else:
        raise AssertionError("expected KeyError")


def test_chained_source_falls_through_and_survives_errors(tmp_path, caplog):
    class Broken:
        def search(self, *a):
            raise ConnectionError("down")

        def get_by_id(self, *a):
            raise ConnectionError("down")

        get_by_title = get_sections = get_by_id

    caplog.set_level(logging.INFO, logger="pasa.tools.sources")
    local = PaperDBSource(*make_db(tmp_path))
    fallback = InMemoryPaperSource([Paper("2401.00009", "Only online")], {"q": ["2401.00009"]})
    chain = ChainedPaperSource(Broken(), local, fallback)
    assert chain.get_by_id("1706.03762").source == "SearchFrom:local_paper_db"
    assert chain.get_by_id("2401.00009").title == "Only online"
    assert chain.search("q", 5) == ["2401.00009"]
    with pytest.raises(ConnectionError, match="down"):  # no answer and a failure: unknown, not "missing"
        chain.get_by_title("missing everywhere")
    assert ChainedPaperSource(local, fallback).get_by_title("missing everywhere") is None  # nothing failed
    assert "down" in caplog.text  # each fall-through is logged


def test_missing_or_damaged_files_are_one_clear_error(tmp_path):
    from pasa.tools.paper_db import PaperDBError

    zip_path, id_path = make_db(tmp_path)
    data = open(zip_path, "rb").read()
    with open(zip_path, "wb") as f:
        f.write(data[: len(data) // 2])  # cut short: the central directory is gone
    with pytest.raises(PaperDBError, match="not a readable zip"):
        PaperDB(zip_path, id_path)
    with pytest.raises(PaperDBError, match="--id2paper"):
        PaperDB(zip_path, str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PaperDBError, match="JSON object"):
        PaperDB(zip_path, str(tmp_path / "list.json"))
