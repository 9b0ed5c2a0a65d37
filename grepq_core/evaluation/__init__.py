"""Reproducing the field's figures: IQA datasets, classical baselines and the evaluation protocols.

- datasets.py: loaders for the standard IQA datasets and a generic CSV;
- baselines.py: NIQE, BRISQUE and NSS features for comparison;
- protocols.py: zero-shot and few-shot (content splits, median over splits), and their tables.
"""
