"""The `pasa` dispatcher: --version, bare `pasa`, unknown commands, prog names and examples in --help."""

import re

import pytest

from pasa import __version__, cli


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pasa {__version__}"


def test_bare_pasa_exits_2_with_usage(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pasa <command>") and "reproduce" in err and "download" in err


def test_unknown_command(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["download", "reproduce", "tiny", "run", "baseline google"])
def test_help_names_the_command_and_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pasa {command}") and f"example:\n  pasa {command}" in out
    text = " ".join(out.split())  # undo argparse's wrapping
    assert re.search(r"default[^()]*\)\.? \(default:", text) is None, "a help text says its default twice"


def test_every_command_resolves_to_its_function():
    import importlib

    for name, (target, _) in cli.COMMANDS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_mistyped_flag_is_one_line_with_the_flag_meant(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--query", "q", "--ouput_dir", "out"])
    assert exc.value.code == 2
    assert (
        capsys.readouterr().err == "pasa run: error: unrecognized argument --ouput_dir; did you mean --output_dir?\n"
    )
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--querry", "q"])
    assert exc.value.code == 2 and "did you mean --query?" in capsys.readouterr().err
