"""The flag vocabulary: old spellings rewritten, released ones silent, changed ones stop with one line."""

import logging
from dataclasses import dataclass, field

import pytest

from pasa.flags import make_argparser, make_parser, rewrite_argv, rewrite_config_keys


@dataclass
class _Args:
    output_dir: str = field(default="results", metadata={"help": "Output folder."})
    search_index: str | None = field(default=None, metadata={"help": "Index folder (default: none)."})
    crawler_path: str = field(default="c", metadata={"help": "Crawler."})
    dtype: str = field(default="auto", metadata={"help": "dtype."})


def _parser():
    return make_parser(_Args, prog="pasa run", example="pasa run --query 'x'")


def test_deprecated_flags_rewritten_with_one_warning_each(caplog):
    parser = _parser()
    with caplog.at_level(logging.WARNING, logger="pasa.flags"):
        argv = rewrite_argv(["--index", "i", "--crawler=cc", "--model_dtype", "bfloat16", "--index", "j"], parser)
    assert argv == ["--search_index", "i", "--crawler_path=cc", "--dtype", "bfloat16", "--search_index", "j"]
    (args,) = parser.parse_args_into_dataclasses(argv)
    assert (args.search_index, args.crawler_path, args.dtype) == ("j", "cc", "bfloat16")
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 3 and sum("--index" in m for m in msgs) == 1
    assert all("deprecated" in m for m in msgs)


def test_released_names_are_silent(caplog):
    with caplog.at_level(logging.WARNING, logger="pasa.flags"):
        argv = rewrite_argv(["--output_folder", "o", "--max_seq_length", "1024"], ["--output_dir", "--max_length"])
    assert argv == ["--output_dir", "o", "--max_length", "1024"]
    assert caplog.records == []


def test_alias_only_where_the_parser_has_the_new_name_and_not_the_old():
    # a parser that still defines the old name keeps it; an unknown flag is left for argparse to reject
    assert rewrite_argv(["--crawler", "x"], ["--crawler", "--crawler_path"]) == ["--crawler", "x"]
    assert rewrite_argv(["--crawler", "x"], ["--output_dir"]) == ["--crawler", "x"]
    # --output: a file where the parser has --output_file, else a folder
    assert rewrite_argv(["--output", "a.json"], ["--output_file", "--output_dir"])[0] == "--output_file"
    assert rewrite_argv(["--output", "d"], ["--output_dir"])[0] == "--output_dir"
    # values and everything after -- are never touched
    assert rewrite_argv(
        ["--query", "--index", "--", "--crawler"], ["--query", "--search_index", "--crawler_path"]
    ) == ["--query", "--search_index", "--", "--crawler"]


def test_changed_meaning_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        rewrite_argv(["--value_step", "5"], ["--value_papers_max"], prog="scripts/ppo.py")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--value_papers_max" in err and err.startswith("scripts/ppo.py: error:")


def test_warnings_only_on_rank0(caplog, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    with caplog.at_level(logging.WARNING, logger="pasa.flags"):
        assert rewrite_argv(["--index", "i"], ["--search_index"]) == ["--search_index", "i"]
    assert caplog.records == []


def test_config_keys():
    out = rewrite_config_keys({"max_seq_length": 8, "train_file": "a", "lr": 1}, ["--max_length", "--dataset_name"])
    assert out == {"max_length": 8, "dataset_name": "a", "lr": 1}


def test_help_names_prog_shows_example_and_no_doubled_default():
    text = _parser().format_help()
    assert text.startswith("usage: pasa run")
    assert "example:\n  pasa run --query 'x'" in text
    assert "(default: none). (default" not in text and "Index folder (default: none)." in text
    assert "Output folder. (default: results)" in text
    assert make_argparser("pasa x", example="pasa x a").format_help().startswith("usage: pasa x")


def test_readme_table_lists_every_alias():
    from pathlib import Path

    from pasa.flags import ALIASES, CHANGED

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text(encoding="utf-8")
    table = readme.split("### Flag names", 1)[1].split("\n## ", 1)[0]
    for alias in ALIASES:
        assert f"`{alias.old}`" in table, alias.old
        assert all(f"`{new}`" in table for new in alias.new), alias.new
    assert all(f"`{old}`" in table for old in CHANGED)


def test_trl_parser_recipe_keys_and_argv_are_rewritten(tmp_path, capsys):
    from trl import TrlParser

    from pasa.flags import parse_args_and_config

    @dataclass
    class _Train:
        max_length: int = field(default=1024, metadata={"help": "Max length."})
        dataset_name: str | None = field(default=None, metadata={"help": "Data."})

    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_seq_length: 512\ntrain_files: data/a.jsonl\n")
    (args,) = parse_args_and_config(TrlParser(_Train), ["--config", str(recipe), "--max_seq_length", "256"])
    assert (args.max_length, args.dataset_name) == (256, "data/a.jsonl")  # the command line overrides the YAML
    (args,) = parse_args_and_config(TrlParser(_Train), [f"--config={recipe}"])
    assert args.max_length == 512
    recipe.write_text("value_step: 5\n")
    with pytest.raises(SystemExit) as exc:
        parse_args_and_config(TrlParser(_Train), ["--config", str(recipe)])
    assert "no longer accepted" in str(exc.value.code)


def test_quiet_other_ranks(monkeypatch):
    import subprocess
    import sys

    from pasa.flags import quiet_other_ranks

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert quiet_other_ranks() is True
    code = (
        "import logging, warnings; from pasa.flags import quiet_other_ranks; r = quiet_other_ranks(); "
        "logging.getLogger('pasa.x').warning('W-LOG'); warnings.warn('W-PY'); print(r)"
    )
    for rank, shown in (("0", True), ("1", False)):
        env = {**__import__("os").environ, "RANK": rank}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == str(shown)
        assert ("W-LOG" in proc.stderr) is shown and ("W-PY" in proc.stderr) is shown
