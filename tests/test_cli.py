"""The `grepq` command: installed entry point, every subcommand's --help, clear errors."""
import argparse
import dataclasses
import importlib
import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import build_pristine, evaluate, make_training_set, suggest_labels, train_hl, train_ll
from pipelines.cli import COMMANDS, main
from pipelines.options import HelpFormatter, flag_message

GREPQ = Path(sys.executable).parent / "grepq"


def test_installed_command_lists_every_subcommand():
    assert GREPQ.exists(), "pip install puts the `grepq` command beside the interpreter"
    out = subprocess.run([str(GREPQ), "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"grepq {name}" in capsys.readouterr().out


def test_missing_required_flag_is_a_clear_error(capsys):
    assert main(["extract", "--output", "/tmp/nowhere"]) == 2
    assert "give --input (globs of images, shards or Parquet files) or --input-list" in capsys.readouterr().err


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
    # old names of renamed flags
    (["extract", "--input", "x/*.jpg", "--output", "o", "--batch", "4"], "--batch-size"),
    (["make-training-set", "--input", "x/*.jpg", "--output", "o", "--output-dir", "p"], "--output"),
])
def test_an_unknown_flag_stops_the_command_with_a_suggestion(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unknown flag {argv[-2]}" in err and f"Did you mean {hint}" in err


def test_core_errors_name_the_commands_flags(tmp_path, capsys):
    (tmp_path / "one.jpg").write_bytes(b"")
    (tmp_path / "out" / "features").mkdir(parents=True)
    (tmp_path / "out" / "features" / "x.parquet").write_bytes(b"")
    assert main(["extract", "--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "out"),
                 "--pathways", "ll"]) == 2
    err = capsys.readouterr().err
    assert "pass --incremental" in err and "another --output" in err and "`" not in err


def test_labels_flag_reaches_fit(tmp_path, capsys):
    assert main(["fit", "--features", str(tmp_path), "--labels", str(tmp_path / "none.csv"),
                 "--output", str(tmp_path / "m.json")]) == 2
    assert "none.csv does not exist" in capsys.readouterr().err


def test_version():
    done = subprocess.run([str(GREPQ), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "grepq 0.1.0"


# Measured with `/usr/bin/time .venv/bin/grepq CMD --help` on the 2-core development machine: 0.2-0.45 s for
# `grepq --help` and every command (report, evaluate, train-ll, train-hl, build-pristine, suggest-labels and
# make-training-set took 9-18 s while they imported torch, Beam, open_clip or matplotlib at load). The bound
# is generous so that a busy machine does not fail it; importing a heavy package at load time does.
HELP_SECONDS = 2.0


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in sorted(COMMANDS))],
                         ids=lambda argv: " ".join(argv))
def test_help_is_fast(argv):
    start = time.perf_counter()
    done = subprocess.run([str(GREPQ), *argv], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "usage: grepq" in done.stdout
    assert elapsed < HELP_SECONDS, f"grepq {' '.join(argv)} took {elapsed:.1f} s"


_HEAVY = ("torch", "apache_beam", "open_clip", "matplotlib", "pandas", "pyarrow", "tqdm", "sklearn", "scipy")


def test_help_imports_no_heavy_package():
    """What makes --help fast: every command module and its parser load without the heavy packages."""
    code = ("import importlib, sys\n"
            "from pipelines.cli import COMMANDS\n"
            "for module, _ in COMMANDS.values():\n"
            "    importlib.import_module(module).arg_parser().format_help()\n"
            f"print(' '.join(m for m in {_HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_has_help_and_its_default_shown_once(name):
    parser = importlib.import_module(COMMANDS[name][0]).arg_parser()
    assert parser.formatter_class is HelpFormatter
    shown = parser.format_help()
    assert "(default: None)" not in shown and "(default: False)" not in shown
    for action in parser._actions:
        assert action.help, f"grepq {name} {action.option_strings[0]} has no help text"
        if action.default not in (None, False, argparse.SUPPRESS):  # the formatter adds "(default: ...)"
            assert "default" not in action.help.lower(), action.option_strings[0]


def _defaults(parser) -> dict:
    return {a.dest: a.default for a in parser._actions}


def test_training_flags_default_to_the_configs_defaults():
    from grepq_core.model.ll_encoder import list_ll_architectures
    from grepq_core.training.configs import HLTrainConfig, LLTrainConfig, TrainingSetSpec

    for parser, config, dests in ((train_ll.arg_parser(), LLTrainConfig(), {}),
                                  (train_hl.arg_parser(), HLTrainConfig(), {"model": "hl_model",
                                                                            "weights": "hl_weights"})):
        flags = _defaults(parser)
        shown = {f.name: flags[dests.get(f.name, f.name)] for f in dataclasses.fields(config)
                 if dests.get(f.name, f.name) in flags}
        assert shown == {name: getattr(config, name) for name in shown}
        assert len(shown) >= 8
    assert train_ll._architectures() == list_ll_architectures()
    assert [*train_ll.arg_parser()._option_string_actions["--arch"].choices] == list_ll_architectures()
    args = make_training_set.arg_parser().parse_args(["--input", "x/*.jpg", "--output", "out"])
    assert make_training_set.spec_from_args(args) == TrainingSetSpec()


def test_light_copies_agree_with_the_core():
    from grepq_core.evaluation.datasets import DATASETS
    from grepq_core.metrics import MAPPINGS
    from grepq_core.training.pristine import build_pristine as build_pristine_photos

    assert evaluate.DATASET_NAMES == tuple(DATASETS)
    assert evaluate.PLCC_MAPPINGS == tuple(MAPPINGS)
    flags = _defaults(build_pristine.arg_parser())
    signature = inspect.signature(build_pristine_photos).parameters
    for flag, param in (("patch", "patch"), ("sharpness", "sharpness_frac"), ("colourfulness", "colour_frac"),
                        ("rule", "rule"), ("ll_weights", "ll_weights"), ("device", "device")):
        assert flags[flag] == signature[param].default, flag


@pytest.mark.parametrize("parser, argv, dest, value", [
    (train_ll.arg_parser, ["--data", "d", "--output", "o", "--batch-size", "3"], "batch", 3),
    (train_hl.arg_parser, ["--input", "x/*", "--output", "o", "--batch-size", "4"], "batch", 4),
    (evaluate.arg_parser, ["--dataset", "csv", "--root", "r", "--output", "ev"], "output", "ev"),
    (suggest_labels.arg_parser, ["--features", "f", "--output", "todo.csv", "--labels", "done.csv"], "labels",
     "done.csv"),
])
def test_one_name_for_one_thing(parser, argv, dest, value):
    """The label file is --labels, the batch size --batch-size and the output --output in every command."""
    assert getattr(parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("name", ["train-ll", "train-hl"])
def test_core_errors_about_the_batch_name_batch_size(name):
    parser = importlib.import_module(COMMANDS[name][0]).arg_parser()
    assert flag_message("`batch` must be at least 1", parser) == "--batch-size must be at least 1"


@pytest.mark.parametrize("argv, old", [
    (["train-ll", "--data", "d", "--output", "o", "--batch", "3"], "--batch"),
    (["train-hl", "--input", "x/*", "--output", "o", "--batch", "4"], "--batch"),
    (["evaluate", "--dataset", "csv", "--root", "r", "--output-dir", "ev"], "--output-dir"),
    (["suggest-labels", "--features", "f", "--output", "todo.csv", "--exclude", "done.csv"], "--exclude"),
])
def test_old_flag_names_are_refused(argv, old, capsys):
    assert main(argv) == 2
    assert f"unrecognized arguments: {old}" in capsys.readouterr().err

