"""`pasa build-db`: unarXive jsonl (+ arXiv metadata) -> the released paper DB layout with cited arXiv ids.

Committed fixtures: tests/fixtures/unarxive/sample_3papers.jsonl (three real papers of the unarXive sample, trimmed,
plus hand-made bad lines) and arxiv_metadata.jsonl (a miniature metadata snapshot). The real 49-paper sample in
../shared/data is used when present.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tarfile
import zipfile

import pytest

from pasa import build_db
from pasa.build_db import build_database
from pasa.paper import title_key
from pasa.tools.paper_db import PaperDB
from pasa.unarxive import convert_paper, section_keys

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "unarxive")
SAMPLE = os.path.join(FIXTURES, "sample_3papers.jsonl")
METADATA = os.path.join(FIXTURES, "arxiv_metadata.jsonl")


def _records(path=SAMPLE):
    out = []
    for line in open(path, encoding="utf-8"):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


def _zip_entries(path):
    with zipfile.ZipFile(path) as zf:
        return {name: json.loads(zf.read(name)) for name in zf.namelist()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("db")
    result = build_database([SAMPLE], str(out), workers=1)
    return out, result


# -- one paper ------------------------------------------------------------------------------------------------------
def test_convert_paper_sections_and_parallel_ids():
    paper = convert_paper(_records()[1])  # 2212.11770, IEEE style with quoted titles and arXiv ids
    assert paper.arxiv_id == "2212.11770"
    assert paper.sections and list(paper.sections) == list(paper.section_ids)
    for name, titles in paper.sections.items():
        assert len(titles) == len(paper.section_ids[name]) and all(titles)
        assert len({title_key(t) for t in titles}) == len(titles)  # no repeats inside a section
    pairs = {t: i for name in paper.sections for t, i in zip(paper.sections[name], paper.section_ids[name])}
    assert pairs["3D Scene Graph: A structure for unified semantics, 3D space, and camera"] == "1910.02527"
    assert None in pairs.values()  # references without an id keep None
    assert paper.published == "20221222"


def test_convert_paper_with_metadata_titles():
    from pasa.tools.title_index import iter_metadata

    records = {r.arxiv_id: r for r in iter_metadata(METADATA)}
    paper = convert_paper(_records()[1], records.get)
    pairs = {i: t for name in paper.sections for t, i in zip(paper.sections[name], paper.section_ids[name])}
    # the metadata title replaces the one read from the reference string
    assert pairs["1910.02527"] == "3D Scene Graph: A Structure for Unified Semantics, 3D Space, and Camera"
    assert paper.counts["titles_from_metadata"] >= 1 and paper.counts["titles_extracted"] >= 1


def test_section_keys_follow_released_ar5iv_keys():
    paras = [
        {"section": "", "sec_type": ""},
        {"section": "Introduction", "sec_type": "section"},
        {"section": "Notation", "sec_type": "subsection"},
        {"section": "Deeper", "sec_type": "subsubsection"},
        {"section": "Method", "sec_type": "section"},
        {"section": "Appendix: proofs", "sec_type": "section"},
        {"section": "References", "sec_type": "section"},
    ]
    assert [k for k, _ in section_keys(paras)] == [
        None, "Introduction", "Introduction Notation", "Introduction Notation", "Method", None, None
    ]  # fmt: skip


def test_convert_paper_counts_bad_references():
    paper = convert_paper(_records()[-2])  # 2212.90003: an empty reference, a dangling cite, one good reference
    assert paper.sections == {"Introduction": ["Attention is all you need"]}
    assert paper.section_ids == {"Introduction": ["1706.03762"]}
    assert paper.counts["bib_without_text"] == 1 and paper.counts["cite_without_bib_entry"] == 1


# -- the build --------------------------------------------------------------------------------------------------------
def test_build_counts_every_bad_input_without_aborting(built):
    out, result = built
    c = result.counts
    assert c["lines"] == 11
    assert c["malformed_line"] == 2  # truncated JSON, a JSON list
    assert c["no_id_or_title"] == 1
    assert c["duplicate_id"] == 1
    assert c["title_key_collision"] == 1
    assert c["title_without_letters"] == 1
    assert c["bib_without_text"] == 1 and c["cite_without_bib_entry"] == 1
    assert c["papers_written"] == 5
    problems = open(out / "problems.log", encoding="utf-8").read().splitlines()
    kinds = {line.split(": ")[1] for line in problems}
    assert {"malformed_line", "no_id_or_title", "duplicate_id", "title_key_collision", "title_without_letters",
            "bib_without_text", "no_body_text"} <= kinds  # fmt: skip
    assert all(line.startswith(os.path.abspath(SAMPLE) + ":") for line in problems)  # file:line
    assert any(line.startswith(f"{os.path.abspath(SAMPLE)}:4: malformed_line") for line in problems)
    report = json.load(open(out / "build_report.json"))
    assert report["counts"]["papers_written"] == 5


def test_build_output_is_the_released_layout(built):
    out, _ = built
    entries = _zip_entries(out / "paper_db.zip")
    id2paper = json.load(open(out / "id2paper.json"))
    assert len(entries) == len(id2paper) == 5
    for title in id2paper.values():
        entry = entries[title_key(title)]  # entries are named by the released title key
        assert entry["title"] == title and isinstance(entry["abstract"], str)
        assert isinstance(entry["sections"], dict)
        assert list(entry["section_ids"]) == list(entry["sections"])
    # the first of two papers with the same title key keeps it; the later duplicate id never replaces the first
    assert id2paper["2212.11808"].startswith("A Mutation-based Text Generation")
    assert "2212.90001" not in id2paper and "2212.90004" not in id2paper


def test_build_is_read_by_paper_db_and_the_data_builders_source(built):
    out, _ = built
    db = PaperDB(str(out / "paper_db.zip"), str(out / "id2paper.json"))
    paper = db.get_by_id("2212.11770v2")
    assert paper is not None and paper.sections
    assert paper.section_ids is not None and list(paper.section_ids) == list(paper.sections)
    assert db.get_by_title(paper.title.upper()).arxiv_id == "2212.11770"
    from pasa.tools.sources import PaperDBSource  # what scripts/build_crawler_data.py reads

    source = PaperDBSource(str(out / "paper_db.zip"), str(out / "id2paper.json"))
    assert source.get_sections("2212.11770") == paper.sections


def test_build_writes_the_search_index_the_runner_reuses(built, caplog):
    out, _ = built
    from pasa.tools.local_search import LocalSearchIndex

    with caplog.at_level("INFO", logger="pasa.tools.local_search"):
        index = LocalSearchIndex.from_paper_db(
            str(out / "paper_db.zip"), str(out / "id2paper.json"), str(out / "search_index")
        )
    assert "using the cached search index" in caplog.text
    assert index.search("scene graph localization mapping", 3)[0] == "2212.11770"
    assert index.get_by_id("2212.11770").section_ids is not None
    index.close()


def test_build_with_metadata_and_category_filter(tmp_path):
    result = build_database([SAMPLE], str(tmp_path), metadata=METADATA, categories=["cs.RO", "cs.CL"], workers=1)
    id2paper = json.load(open(tmp_path / "id2paper.json"))
    # 2212.90003 is math.PR in the snapshot (the snapshot's categories win over the record's cs.CL); 2212.90002
    # is not in the snapshot and its record says cs.LG
    assert set(id2paper) == {"2212.11808", "2212.11770", "2212.11791"}
    assert result.counts["category_filtered"] >= 2 and result.counts["titles_from_metadata"] >= 1
    from pasa.tools.title_index import TitleIndex

    index = TitleIndex(str(tmp_path / "title_index"))
    assert index.get_by_title("attention is all you need").arxiv_id == "1706.03762"


def test_build_resumes_after_a_kill(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):  # three input files, one gzipped
        target = inputs / f"part{i}.jsonl"
        if i == 2:
            with open(SAMPLE, "rb") as src, gzip.open(str(target) + ".gz", "wb") as dst:
                dst.write(src.read())
        else:
            shutil.copy(SAMPLE, target)
    out = tmp_path / "db"
    first = build_database([str(inputs)], str(out), workers=1)
    reference = _zip_entries(out / "paper_db.zip")
    assert first.files == 3 and first.counts["duplicate_id"] == 1 + 2 * 8  # 8 papers with ids per file

    # a kill during conversion: one finished shard lost its marker, another was half written, no report yet
    work = out / build_db.WORK_DIR
    markers = sorted(p for p in os.listdir(work) if p.endswith(".done.json"))
    os.remove(work / markers[0])
    shard = str(work / markers[1]).removesuffix(".done.json")
    os.replace(shard, shard + ".part")
    os.remove(work / markers[1])
    os.remove(out / "build_report.json")
    second = build_database([str(inputs)], str(out), workers=1)
    assert second.files_resumed == 1
    assert _zip_entries(out / "paper_db.zip") == reference
    assert second.counts == first.counts

    # a changed input file is converted again, the others are reused
    shutil.copy(SAMPLE, inputs / "part0.jsonl")
    os.utime(inputs / "part0.jsonl", ns=(1, 1))
    third = build_database([str(inputs)], str(out), workers=1)
    assert third.files_resumed == 2


def test_build_in_parallel_matches_serial(tmp_path):
    for i in range(2):
        shutil.copy(SAMPLE, tmp_path / f"f{i}.jsonl")
    serial = build_database([str(tmp_path / "f0.jsonl"), str(tmp_path / "f1.jsonl")], str(tmp_path / "a"),
                            workers=1, search_index=False)  # fmt: skip
    parallel = build_database([str(tmp_path)], str(tmp_path / "b"), workers=2, search_index=False)
    assert _zip_entries(tmp_path / "a" / "paper_db.zip") == _zip_entries(tmp_path / "b" / "paper_db.zip")
    assert serial.counts == parallel.counts


def test_cli(tmp_path, capsys):
    from pasa.cli import main

    assert main(["build-db", SAMPLE, "--output_dir", str(tmp_path / "db"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "papers: 5 written of 11 lines" in out and "title_key_collision" in out
    assert main(["build-db", "--output_dir", str(tmp_path / "x")]) == 2
    assert main(["build-db", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "y")]) == 2
    assert main(["build-db", "--metadata", METADATA, "--output_dir", str(tmp_path / "t")]) == 0  # title index only
    assert os.path.isfile(tmp_path / "t" / "title_index" / "title_index.sqlite")


# -- the real sample ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make_args, expected",
    [
        (lambda t: [str(t / "nothing")], "no unarXive files (*.jsonl, *.jsonl.gz) in"),
        (lambda t: [str(t / "missing.jsonl")], "does not exist"),
        (lambda t: ["--metadata", str(t / "no-snapshot.json")], "--metadata"),
        (lambda t: [SAMPLE, "--title_index", str(t / "no-index")], "--title_index"),
    ],
)
def test_a_build_that_cannot_start_is_one_line_and_leaves_nothing(make_args, expected, tmp_path, capsys):
    from pasa.cli import main

    (tmp_path / "nothing").mkdir()
    out = tmp_path / "db"
    assert main(["build-db", *make_args(tmp_path), "--output_dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and expected in captured.err
    assert not out.exists()  # no build_report.json, no empty folder


def test_a_mistyped_flag_is_named_before_a_missing_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        build_db.main([SAMPLE, "--outptu_dir", str(tmp_path / "db")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert err == ["pasa build-db: error: unrecognized argument --outptu_dir; did you mean --output_dir?"]
    assert not (tmp_path / "db").exists()


def test_a_build_failing_midway_removes_the_folder_it_created(tmp_path, capsys, monkeypatch):
    import pasa.build_db as build_db

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build_db, "build_database", fail)
    assert build_db.main([SAMPLE, "--output_dir", str(tmp_path / "db")]) == 2
    assert "disk full" in capsys.readouterr().err and not (tmp_path / "db").exists()
    (tmp_path / "kept").mkdir()
    assert build_db.main([SAMPLE, "--output_dir", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir()  # a folder the user made stays


def test_real_unarxive_sample(tmp_path, shared_data):
    real_sample = shared_data / "unarxive_sample" / "unarXive_data_sample.tar.gz"
    if not real_sample.is_file():
        pytest.skip("the unarXive sample is not in ../shared/data")
    with tarfile.open(real_sample) as tar:
        tar.extractall(tmp_path, filter="data")
    result = build_database([str(tmp_path / "unarXive_data_sample")], str(tmp_path / "db"), workers=1)
    c = result.counts
    assert c["lines"] == 49 and c["papers_written"] == 49 and c["malformed_line"] == 0
    db = PaperDB(str(tmp_path / "db" / "paper_db.zip"), str(tmp_path / "db" / "id2paper.json"))
    with_sections = [p for p in db.iter_papers() if p.sections]
    assert len(with_sections) >= 35
    ids = [i for p in with_sections for v in p.section_ids.values() for i in v if i]
    assert len(ids) >= 150  # unarXive resolved 146 entries, plus ids written in the strings
    # the cs.CL paper cites the evasion-attack papers by their titles, read from the raw strings
    paper = db.get_by_id("2212.11808")
    titles = [t for v in paper.sections.values() for t in v]
    assert "Evasion attacks with adversarial deep learning against power system state estimation" in titles
    assert c["titles_extracted"] > c["bib_no_title"]


def test_truncated_gzip_and_odd_shapes_never_abort(tmp_path):
    data = open(SAMPLE, "rb").read()
    packed = gzip.compress(data)
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) * 2 // 3])  # a download cut short
    odd = {"paper_id": "2212.90009", "metadata": {"title": "Odd shapes", "versions": "not a list"},
           "body_text": [{"section": "Intro", "sec_type": "section", "cite_spans": [{"ref_id": "a"}, "x", {}]}],
           "bib_entries": {"a": {"bib_entry_raw": 42, "ids": None, "contained_arXiv_ids": "2101.00001"}}}  # fmt: skip
    (tmp_path / "odd.jsonl").write_text(json.dumps(odd) + "\n")
    result = build_database([str(tmp_path)], str(tmp_path / "db"), workers=1, search_index=False)
    assert result.counts["truncated_input"] == 1
    assert result.counts["papers_written"] >= 2  # the papers before the cut, and the odd one
    problems = open(tmp_path / "db" / "problems.log", encoding="utf-8").read()
    assert "cut.jsonl.gz:" in problems and "truncated_input" in problems


def test_doctests():
    import doctest

    from pasa import unarxive
    from pasa.tools import title_index

    assert all(doctest.testmod(m).failed == 0 for m in (build_db, unarxive, title_index))


def test_agent_resolves_the_built_citations_by_id(tmp_path):
    """End to end: a built database, the offline source, the agent. A reference whose string is garbled but whose
    arXiv id unarXive resolved is found by id; one without an id is found by its (exact) title."""
    from pasa.agent import AgentConfig, PaperAgent
    from pasa.crawler import Crawler
    from pasa.llm.scripted import ScriptedLLM
    from pasa.selector import Selector
    from pasa.tools.sources import build_paper_source

    survey = {
        "paper_id": "2301.00001",
        "metadata": {"id": "2301.00001", "title": "Kumquat scene graphs for robots: a survey", "abstract": "Kumquat.",
                     "categories": "cs.RO"},
        "body_text": [{"section": "Related work", "sec_type": "section", "cite_spans": [{"ref_id": "b1"}, {"ref_id": "b2"}]}],
        "bib_entries": {
            "b1": {"bib_entry_raw": "H. Bavle et al., S-Grphs+ (garbled), 2022.", "ids": {"arxiv_id": "2212.11770"}},
            "b2": {"bib_entry_raw": "P. Author. A Mutation-based Text Generation for Adversarial Machine Learning "
                                    "Applications. arXiv, 2022.", "ids": {"arxiv_id": ""}},
        },
    }  # fmt: skip
    extra = tmp_path / "survey.jsonl"
    extra.write_text(json.dumps(survey) + "\n")
    out = tmp_path / "db"
    build_database([SAMPLE, str(extra)], str(out), workers=1)
    source = build_paper_source(paper_db=str(out / "paper_db.zip"), id2paper=str(out / "id2paper.json"), online=False)
    crawler = ScriptedLLM(replies={"q": "[Search] kumquat\n[StopSearch]",
                                   survey["metadata"]["title"]: "[Expand] Related work\n[StopExpand]"})  # fmt: skip
    agent = PaperAgent(
        Crawler(crawler), Selector(ScriptedLLM()), source, AgentConfig(expand_layers=1, search_papers=1)
    )
    root = agent.run("q")
    [found] = root.child["kumquat"]
    assert found.arxiv_id == "2301.00001"
    children = found.child["Related work"]
    assert [(c.arxiv_id, c.extra["resolved_by"]) for c in children] == [("2212.11770", "id"), ("2212.11808", "title")]
