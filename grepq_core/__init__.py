"""grepq_core: the GRepQ method as plain PyTorch and numpy (see ARCHITECTURE.md).

The public surface:

- `grepq_core.load(...)` gives a model whose `.score(paths)` returns a pandas
  DataFrame (grepq_core/api.py); it is imported on first use, so that
  importing a light module such as grepq_core.errors stays fast;
- `grepq_core.errors`: `GrepqError`, `ImageError`, `Failure`;
- `grepq_core.model.registry.register`: add a pathway
  (grepq_core/model/pathway.py says what one is);
- the folders, one job each: `images` (bytes to pixels), `model` (the method
  at scoring time), `training` (building the models), `fitting` (labels to
  scores), `evaluation` (the field's protocols).
"""

__all__ = ["load"]


def __getattr__(name):
    if name == "load":
        from grepq_core.api import load

        return load
    raise AttributeError(f"module 'grepq_core' has no attribute {name!r}")
