"""From feature rows and a few labels to scores: the ridge model, the fit choice, scoring and label picks.

- features.py: feature rows to the regressor's matrix, and what the zero-shot score is;
- labels.py: label files, read and joined to feature rows;
- ridge.py, ridge_fit.py, ridge_file.py: the ridge model, its cross-validated fit, its JSON file;
- choice.py: the fit that never makes the score worse than zero-shot;
- scoring.py: one feature row to one score, and what keep / reject go by;
- selection.py: which images to label first.
"""
