"""core/ (voxc.core): the bottom layer -- errors, hashing, atomic writes, gates, metrics, audio features.

numpy only, imported by every other layer and shipped in device bundles; it imports nothing above it.
"""
