"""The `grepq` command: installed entry point, every subcommand's --help, clear errors."""
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import COMMANDS, main


def test_installed_command_lists_every_subcommand():
    grepq = Path(sys.executable).parent / "grepq"
    assert grepq.exists(), "pip install puts the `grepq` command beside the interpreter"
    out = subprocess.run([str(grepq), "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"grepq {name}" in capsys.readouterr().out


def test_missing_required_flag_is_a_clear_error(capsys):
    assert main(["extract", "--output", "/tmp/nowhere"]) == 2
    assert "the following arguments are required: --input" in capsys.readouterr().err


@pytest.mark.parametrize("name, own, foreign", [
    ("extract", ["--input", "--output", "--incremental", "--pathways", "--max-patches"], ["--features", "--model",
                                                                                         "--labels"]),
    ("fit", ["--features", "--labels", "--alphas"], ["--input", "--incremental", "--pathways"]),
    ("score", ["--features", "--model", "--keep-top-fraction"], ["--input", "--incremental", "--labels"]),
])
def test_each_beam_command_lists_its_own_flags_only(name, own, foreign, capsys):
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert all(f in text for f in own) and not any(f"{f} " in text or f"{f}\n" in text for f in foreign)
    assert "(default: " in text


@pytest.mark.parametrize("argv, hint", [
    (["score", "--features", "f", "--output", "o", "--keep-top-fractoin", "0.5"], "--keep-top-fraction"),
    (["extract", "--input", "x/*.jpg", "--output", "o", "--ouput", "p"], "--output"),
    (["extract", "--input", "x/*.jpg", "--output", "o", "--pathway", "ll"], "--pathways"),
])
def test_an_unknown_flag_stops_the_command_with_a_suggestion(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unknown flag {argv[-2]}" in err and f"Did you mean {hint}" in err


def test_core_errors_name_the_commands_flags(tmp_path, capsys):
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "x.parquet").write_bytes(b"")
    assert main(["extract", "--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path),
                 "--pathways", "ll"]) == 2
    err = capsys.readouterr().err
    assert "pass --incremental" in err and "another --output" in err and "`" not in err


def test_labels_flag_reaches_fit(tmp_path, capsys):
    assert main(["fit", "--features", str(tmp_path), "--labels", str(tmp_path / "none.csv"),
                 "--output", str(tmp_path / "m.json")]) == 2
    assert "none.csv does not exist" in capsys.readouterr().err
