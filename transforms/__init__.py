"""Beam PTransforms and DoFns built on grepq_core."""
