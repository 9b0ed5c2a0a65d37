"""Where the models that ship inside the package live.

`grepq train-ll` and `grepq build-pristine` produced them (MODEL_CARD.md
says how); they are what "shipped" means for --ll-weights and --pristine.
"""
from pathlib import Path

__all__ = ["ASSETS", "SHIPPED_LL", "SHIPPED_PRISTINE"]

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_LL = ASSETS / "ll_encoder.pt"
SHIPPED_PRISTINE = ASSETS / "pristine.npz"
