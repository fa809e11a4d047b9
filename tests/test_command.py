"""The roadseg command: every subcommand resolves to a stage with the CLI contract, the overview is
quick and light, and bad input is one line."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from roadseg.models.core.cli import image_size, non_negative_int, positive_float, positive_int, unit_interval
from roadseg.models.core.command import COMMANDS, command_parser, main
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_a_stage_with_parser_and_main(name):
    parser, stage_main = command_parser(name)
    assert parser.prog == f"roadseg {name}" and callable(stage_main)
    help_text = parser.format_help()
    assert "example: roadseg " + name in help_text
    module = importlib.import_module(COMMANDS[name].module)
    assert module.__doc__ and module.__doc__.strip(), f"{COMMANDS[name].module} has no docstring"


def test_help_shows_defaults():
    parser, _ = command_parser("bench")
    assert "(default: 30)" in parser.format_help()  # --runs


def test_overview_lists_every_command_and_imports_no_stage():
    code = ("import sys; from roadseg.models.core.command import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'cv2', 'onnxruntime', 'roadseg.train',"
            " 'roadseg.deploy', 'roadseg.export', 'roadseg.compress'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "[]"
    for name, command in COMMANDS.items():
        assert any(line.split()[:1] == [name] and command.summary in line for line in lines), name


def test_unknown_command_and_bad_value_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["trian"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'trian'" in err[0] and "train" in err[0]
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--model", "x.onnx", "--runs", "0"])
    assert stop.value.code == 2
    assert "argument --runs: expected an integer >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize(("parse", "good", "bad"), [
    (positive_int, {"1": 1, "30": 30}, ["0", "-1", "1.5", "x", ""]),
    (non_negative_int, {"0": 0, "7": 7}, ["-1", "nan", "1e3"]),
    (positive_float, {"0.5": 0.5, "1e-4": 1e-4}, ["0", "-2", "nan", "inf", "x"]),
    (unit_interval, {"0": 0.0, "1": 1.0, "0.3": 0.3}, ["-0.1", "1.01", "nan"]),
    (image_size, {"352x480": (352, 480), "64X96": (64, 96)}, ["352", "0x480", "352x-1", "axb", "1x2x3"]),
])
def test_argument_types(parse, good, bad):
    import argparse

    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(text)
