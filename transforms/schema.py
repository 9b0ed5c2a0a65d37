"""Every Parquet schema grepq writes, in one place.

A stage that reads another's output relies on these names and types; the
encoder identities in each feature row say which weights produced it, and
zs_ll_identity which pristine model and distance settings gave zs_ll.
"""
import pyarrow as pa

__all__ = ["FEATURES", "IDENTITY_COLUMNS", "DEAD_LETTERS", "SCORES", "BASELINES", "FEATURES_DIR",
           "DEAD_LETTERS_DIR", "SCORES_DIR", "BASELINES_DIR"]

FEATURES_DIR = "features"
DEAD_LETTERS_DIR = "dead_letters"
SCORES_DIR = "scores"
BASELINES_DIR = "baselines"  # grepq evaluate's cache of classical metrics

FEATURES = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("decoder", pa.string()),
    ("ll_features", pa.list_(pa.float32())),
    ("hl_features", pa.list_(pa.float32())),
    ("zs_ll", pa.float64()),
    ("zs_hl", pa.float64()),
    ("zs_combined", pa.float64()),
    ("ll_identity", pa.string()),
    ("hl_identity", pa.string()),
    ("zs_ll_identity", pa.string()),  # pristine model and distance settings behind zs_ll
])
IDENTITY_COLUMNS = ("ll_identity", "hl_identity", "zs_ll_identity")  # rows equal in these were made the same way

DEAD_LETTERS = pa.schema([
    ("path", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
])

SCORES = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("score", pa.float64()),
    ("calibrated", pa.float64()),
    ("scorer", pa.string()),
    ("keep", pa.bool_()),
    ("zs_ll", pa.float64()),
    ("zs_hl", pa.float64()),
    ("zs_combined", pa.float64()),
])

BASELINES = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("niqe", pa.float64()),
    ("brisque", pa.float64()),
    ("nss", pa.list_(pa.float64())),
])
