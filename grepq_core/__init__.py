"""grepq_core: the GRepQ method as plain PyTorch and numpy (see ARCHITECTURE.md)."""
