"""`grepq extract`: images -> one Parquet feature row each, or a dead letter.

    Match -> Read and prepare views -> RunInference (both encoders) -> Write
                    \\-> dead letters ------------------/-> Write dead letters
"""
from __future__ import annotations

import dataclasses
import logging

import apache_beam as beam

from grepq_core.extractor import Extractor
from pipelines.options import GrepqOptions, help_parser, encoder_spec, require
from transforms.inference import ExtractFeatures, GrepqModelHandler
from transforms.read import DEAD, MatchImages, ReadAndPrepare
from transforms.schema import DEAD_LETTERS, DEAD_LETTERS_DIR, FEATURES, FEATURES_DIR
from transforms.write import WriteRows

__all__ = ["run", "arg_parser", "check_weights"]

log = logging.getLogger(__name__)


def check_weights(spec) -> None:
    """Load every selected model once, on the CPU, before any image is read.

    Missing or unreachable weights stop the command here with a message that
    names the flag to change, instead of failing on every worker later.
    """
    model = Extractor.load(dataclasses.replace(spec, device="cpu"))
    log.info("encoders: ll=%s hl=%s", model.ll_identity, model.hl_identity)


def build(p: beam.Pipeline, opts: GrepqOptions):
    """Add the extract steps to `p`."""
    spec = encoder_spec(opts)
    handler = GrepqModelHandler(spec, large_model=opts.large_model)
    prepared = (p
                | "Match" >> MatchImages(opts.input)
                | "Read" >> beam.ParDo(ReadAndPrepare(spec)).with_outputs(DEAD, main="prepared"))
    rows, failed = prepared.prepared | "Extract" >> ExtractFeatures(handler)
    rows | "WriteFeatures" >> WriteRows(opts.output, FEATURES_DIR, FEATURES)
    ((prepared[DEAD], failed) | "AllDead" >> beam.Flatten()
     | "WriteDead" >> WriteRows(opts.output, DEAD_LETTERS_DIR, DEAD_LETTERS))


def run(argv=None, test_pipeline=None):
    options = GrepqOptions(argv)
    require(options, "input", "output")
    check_weights(encoder_spec(options))
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, options)


def arg_parser():
    return help_parser("extract", __doc__.strip().splitlines()[0], ("io", "encoders", "views"))
