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
    assert "missing --input" in capsys.readouterr().err


def test_labels_flag_reaches_fit(tmp_path, capsys):
    assert main(["fit", "--features", str(tmp_path), "--labels", str(tmp_path / "none.csv"),
                 "--output", str(tmp_path / "m.json")]) == 2
    assert "none.csv does not exist" in capsys.readouterr().err
