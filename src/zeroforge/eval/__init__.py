"""Evaluation: ``metrics`` (accuracy, P/R/F1, confusion, ROC AUC, perplexity) and ``plots`` (PNG figures).

Submodules are imported where used, so ``import zeroforge.eval`` loads neither torch nor matplotlib.
"""
