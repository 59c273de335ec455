"""Data cleaning: ``zeroforge clean`` and ``zeroforge.data.clean.clean(...)``.

    from zeroforge.data.clean import clean
    report = clean("reviews.csv", "reviews.clean.csv", {"labels": {"allowed": [0, 1]}})
    print(report.summary())

Modules: ``config`` (CleanConfig), ``text`` (normalisation,
language, spelling), ``dedup`` (exact + MinHash/LSH near duplicates), ``report`` (CleanReport),
``pipeline`` (the rules in order, ``clean``, ``clean_step``); the ``clean`` subcommand is in ``zeroforge.cli``. Files are read
and written by ``zeroforge.data.records``, the reader training uses too.
"""

from zeroforge.data.clean.config import CleanConfig, DedupArgs, LabelArgs, NormalizeArgs, load_clean_config
from zeroforge.data.clean.pipeline import clean, clean_step, cleaned_path
from zeroforge.data.clean.report import CleanReport

__all__ = [
    "CleanConfig",
    "CleanReport",
    "DedupArgs",
    "LabelArgs",
    "NormalizeArgs",
    "clean",
    "clean_step",
    "cleaned_path",
    "load_clean_config",
]
