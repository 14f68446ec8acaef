"""Corpus generation (corpus.py) and the committed calibration/parity/reference sets (sets.py)."""
