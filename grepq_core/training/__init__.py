"""Training both GRepQ pathways (docs/method.md, "Training the LL encoder" and "Fine-tuning the HL encoder").

- data.py: the QACL training set (K versions + FSIM matrix per photo) and its storage;
- ll.py: QACL training of the LL encoder, with checkpoints and resume;
- hl.py: GCL fine-tuning of the HL (CLIP) image tower.

Import the submodules directly; this package imports none of them, so a
Beam worker building training records does not load open_clip.
"""

__all__ = ["data", "hl", "ll"]
