"""Data pipelines: token files for language models (text.py), cleaning, tables, images."""
