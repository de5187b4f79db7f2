"""pasa.flags: HfArgumentParser as it is, one line with the closest flag for a mistyped one, released names added
only where asked."""

import argparse
from dataclasses import dataclass, field

import pytest

from pasa.flags import (
    add_released_names,
    check_flags,
    find_unknown_flag,
    make_argparser,
    make_parser,
    parse_dataclasses,
    unknown_flag_message,
)


@dataclass
class Args:
    output_dir: str = field(default="out", metadata={"help": "Where results go."})
    search_index: str | None = field(default=None, metadata={"help": "Index folder."})
    expand_layers: int = field(default=2, metadata={"help": "Layers."})

    def __post_init__(self):
        if self.expand_layers < 0:
            raise ValueError(f"--expand_layers must be >= 0, got {self.expand_layers}\nsecond line")


def parser():
    return make_parser(Args, prog="pasa x", example="pasa x --output_dir o")


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--ouput_dir", "unrecognized argument --ouput_dir; did you mean --output_dir?"),
        ("--serch_index", "unrecognized argument --serch_index; did you mean --search_index?"),
        ("--expand_layer=3", None),  # an unambiguous prefix: argparse takes it
        ("--zzz", "unrecognized argument --zzz (see --help)"),
    ],
)
def test_unknown_flag_is_one_line_with_the_closest_flag(flag, expected, capsys):
    argv = ["--output_dir", "o", flag] + ([] if "=" in flag else ["v"])
    if expected is None:
        assert parse_dataclasses(parser(), argv)[0].expand_layers == 3
        return
    with pytest.raises(SystemExit) as exc:
        parse_dataclasses(parser(), argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"pasa x: error: {expected}\n"


def test_values_and_the_separator_are_not_flags():
    p = parser()
    assert find_unknown_flag(["--output_dir", "-x", "--", "--anything"], p) is None
    assert unknown_flag_message("--index", ["--search_index"]) == (
        "unrecognized argument --index; did you mean --search_index?"
    )


def test_a_refused_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_dataclasses(parser(), ["--expand_layers", "-1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "pasa x: error: --expand_layers must be >= 0, got -1\n"


def test_released_names_only_where_added():
    p = parser()
    add_released_names(p, {"--output_folder": "--output_dir"})
    (args,) = parse_dataclasses(p, ["--output_folder", "res"])
    assert args.output_dir == "res"
    (args,) = parse_dataclasses(p, [])
    assert args.output_dir == "out"  # the released spelling adds no default of its own
    assert "--output_folder" not in parser()._option_string_actions


def test_plain_argparse_parsers_get_the_same_hint(capsys):
    p = make_argparser("pasa y")
    p.add_argument("--query")
    assert check_flags(["--query", "q"], p) == ["--query", "q"]
    with pytest.raises(SystemExit):
        check_flags(["--qury", "q"], p)
    assert "did you mean --query?" in capsys.readouterr().err
    assert isinstance(p, argparse.ArgumentParser)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--query", "q", "--qury=q"])
    assert (
        exc.value.code == 2
        and capsys.readouterr().err == "pasa y: error: unrecognized argument --qury; did you mean --query?\n"
    )
    assert p.parse_known_args(["--query", "q", "--other", "x"])[1] == ["--other", "x"]  # parse_known_args unchanged


def test_help_names_prog_shows_example_and_no_doubled_default(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: pasa x") and "example:\n  pasa x --output_dir o" in out
    assert out.count("(default: out)") == 1


def test_quiet_other_ranks(monkeypatch):
    import subprocess
    import sys

    code = (
        "import logging, warnings; from pasa.flags import quiet_other_ranks; r = quiet_other_ranks(); "
        "logging.getLogger('pasa').warning('hidden'); warnings.warn('hidden'); print(r)"
    )
    for rank, expected in (("0", "True"), ("3", "False")):
        env = {**__import__("os").environ, "RANK": rank, "LOCAL_RANK": rank}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert done.stdout.strip() == expected
        assert ("hidden" in done.stderr) == (rank == "0")
