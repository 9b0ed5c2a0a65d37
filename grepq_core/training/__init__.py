"""Everything that builds an asset: training both pathways, the pristine model and the 0-100 scale's anchors.

docs/method.md, "Training the LL encoder", "Fine-tuning the HL encoder" and "Zero-shot":

- configs.py: the training settings and their defaults (no torch, so the CLI reads them for --help);
- distortions.py, fsim.py: graded synthetic distortions and the FSIM annotator matrix;
- data.py: the QACL training set (K versions + FSIM matrix per photo) and its storage;
- losses.py: QACL and GCL;
- ll.py, hl.py: the LL training loop and the HL fine-tuning loop;
- pristine_patches.py, pristine.py, calibration.py: which patches are pristine, the pristine model
  built from photos, and the anchors of the calibrated scale.

Import the submodules directly; this package imports none of them, so a
Beam worker building training records does not load open_clip.
"""
